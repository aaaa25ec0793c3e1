package auth_test

import (
	"context"
	"errors"
	"testing"

	"github.com/warden-sh/warden/internal/auth"
	"github.com/warden-sh/warden/internal/policy"
	"github.com/warden-sh/warden/internal/wire"
)

type staticKubeInventory []auth.KubeCluster

func (s staticKubeInventory) KubeClusters() []auth.KubeCluster { return s }

// The Kubernetes operations' rows and probes in the permission matrix
// (TestPermissionMatrix): listed here to keep them next to their tests.
func init() {
	//                                no roles access auditor admin role node  proxy  admin
	matrix["ListKubeClusters"] = row{own, own, own, own, deny, deny, all}
	matrix["AuthorizeKube"] = row{all, all, all, all, deny, deny, deny}
	probes["ListKubeClusters"] = func(f *matrixFixture, c auth.Caller) outcome {
		f.a.SetKubeInventory(staticKubeInventory{{Name: "k1", Labels: map[string]string{"env": "dev"}}, {Name: "k2"}})
		got, err := f.a.ListKubeClusters(context.Background(), c)
		return share(err, len(got) == 2)
	}
	probes["AuthorizeKube"] = func(f *matrixFixture, c auth.Caller) outcome {
		_, err := f.a.AuthorizeKube(context.Background(), c, auth.KubeCluster{Name: "k1"}, policy.KubeResource{Verb: "get"})
		// Past the gate, the built-in roles allow no cluster: a policy
		// refusal means the operation ran.
		if pd := (*policy.DeniedError)(nil); errors.As(err, &pd) {
			return all
		}
		return gate(err)
	}
}

func TestKubeJoinTokens(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	if _, err := f.a.CreateToken(ctx, auth.AdminCaller(), auth.CreateTokenRequest{Type: "robot"}); err == nil {
		t.Fatal("unknown token type accepted")
	}
	kube, err := f.a.CreateToken(ctx, auth.AdminCaller(), auth.CreateTokenRequest{Type: wire.TokenTypeKube, Reusable: true})
	if err != nil {
		t.Fatal(err)
	}
	node, err := f.a.CreateToken(ctx, auth.AdminCaller(), auth.CreateTokenRequest{Type: wire.TokenTypeNode, Reusable: true})
	if err != nil {
		t.Fatal(err)
	}
	pub := pubKey(t)
	// A node token does not join a kube agent, nor a kube token a node.
	if _, err := f.a.JoinNode(ctx, auth.JoinRequest{Token: node.Token, Kind: wire.TokenTypeKube, Name: "k", Hostname: "h", PublicKey: pub}); err == nil {
		t.Fatal("kube agent joined with a node token")
	}
	if _, err := f.a.JoinNode(ctx, auth.JoinRequest{Token: kube.Token, Name: "n", Hostname: "h", PublicKey: pub}); err == nil {
		t.Fatal("node joined with a kube token")
	}
	res, err := f.a.JoinNode(ctx, auth.JoinRequest{Token: kube.Token, Kind: wire.TokenTypeKube, Name: "k", Hostname: "h", PublicKey: pub})
	if err != nil {
		t.Fatal(err)
	}
	reg, err := f.a.GetNodeRegistration(ctx, res.NodeID)
	if err != nil || reg.Kind != auth.RegistrationKube {
		t.Fatalf("registration %+v, %v", reg, err)
	}
}
