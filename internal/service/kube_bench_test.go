package service

import (
	"bufio"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/warden-sh/warden/internal/auth"
	"github.com/warden-sh/warden/internal/policy"
	"github.com/warden-sh/warden/internal/testkit"
)

// The kube path's own CPU cost, in one process (auth, proxy, agent and a
// stand-in API server): what to profile (go test -cpuprofile) to see
// where Warden's time goes per request and per streamed byte, without a
// kube-apiserver. The integration benchmarks
// (internal/clustertest/kube_bench_test.go) measure the goals against a
// real API server.

// kubeBenchPath starts auth, proxy and a kube agent in front of upstream
// and returns the proxy's /kube/k1 base URL and a client of a user
// allowed everything in the cluster.
func kubeBenchPath(b *testing.B, upstream *httptest.Server) (string, *http.Client) {
	dir := b.TempDir()
	kubeconfig := writeAgentKubeconfig(b, dir, upstream.URL)
	cfg := &Config{ClusterName: "test", DataDir: filepath.Join(dir, "data"), Services: []string{Auth, Proxy, Kube},
		Proxy: ProxyConfig{Listen: "127.0.0.1:0", MetricsAddr: MetricsOff}}
	cfg.Kube.Clusters = append(cfg.Kube.Clusters, kubeClusterSettings("k1", kubeconfig))
	ctx := context.Background()
	p, err := Start(ctx, cfg, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { p.Close() })
	a := p.Auth()
	roles, err := policy.ParseRoles([]byte(`kind: role
metadata: {name: kube-all}
spec:
  options: {record_session: "off"}
  allow:
    kubernetes_labels: {env: dev}
    kubernetes_groups: [developers]
    kubernetes_resources: [{kind: "*", namespace: "*", name: "*", verbs: ["*"]}]
`))
	if err != nil {
		b.Fatal(err)
	}
	if err := a.UpsertRole(ctx, auth.AdminCaller(), roles[0]); err != nil {
		b.Fatal(err)
	}
	hc := userClient(b, a, "bench", []string{"kube-all"})
	hc.Transport.(*http.Transport).MaxIdleConnsPerHost = 64
	testkit.WaitFor(b, "the kube agent's cluster", func() bool {
		cl, err := a.ListKubeClusters(ctx, auth.AdminCaller())
		return err == nil && len(cl) == 1
	})
	return "https://" + p.ProxyAddr() + "/kube/k1", hc
}

// BenchmarkKubePathRequest sends small GETs through proxy and agent,
// from 64 clients at once.
func BenchmarkKubePathRequest(b *testing.B) {
	upstream := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"cm1","namespace":"default"},"data":{"a":"b"},"user":%q}`, r.Header.Get("Impersonate-User"))
	}))
	defer upstream.Close()
	upstream.Client().Transport.(*http.Transport).MaxIdleConnsPerHost = 256
	base, hc := kubeBenchPath(b, upstream)
	url := base + "/api/v1/namespaces/default/configmaps/cm1"
	b.SetParallelism(32)
	cpu0 := processCPU()
	b.ResetTimer()
	defer reportCPU(b, cpu0)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := hc.Get(url)
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Errorf("%s", resp.Status)
				return
			}
		}
	})
}

// BenchmarkKubePathExecOutput reads exec output (WebSocket
// v5.channel.k8s.io, stdout frames of 32 KiB) through proxy and agent.
func BenchmarkKubePathExecOutput(b *testing.B) {
	const frame = 32 << 10
	upstream := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		key := r.Header.Get("Sec-WebSocket-Key")
		_, _ = brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Protocol: v5.channel.k8s.io\r\nSec-WebSocket-Accept: " + wsAccept(key) + "\r\n\r\n")
		_ = brw.Flush()
		n := 0
		fmt.Sscan(r.URL.Query().Get("n"), &n)
		hdr := []byte{0x82, 127, 0, 0, 0, 0, 0, 0, 0, 0, 1}
		binary.BigEndian.PutUint64(hdr[2:10], frame+1)
		payload := make([]byte, frame)
		w2 := bufio.NewWriterSize(conn, 64<<10)
		for range n {
			_, _ = w2.Write(hdr)
			if _, err := w2.Write(payload); err != nil {
				return
			}
		}
		// Exit status 0 on the error stream, then close.
		st := `{"metadata":{},"status":"Success"}`
		_, _ = w2.Write(append([]byte{0x82, byte(len(st) + 1), 3}, st...))
		_, _ = w2.Write([]byte{0x88, 2, 3, 232})
		_ = w2.Flush()
		_, _ = io.Copy(io.Discard, brw)
	}))
	defer upstream.Close()
	base, hc := kubeBenchPath(b, upstream)
	url := strings.Replace(base, "https://", "wss://", 1) + "/api/v1/namespaces/default/pods/p1/exec?command=head&stdout=true&n=" + fmt.Sprint(b.N)
	ctx := context.Background()
	c, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPClient: hc, Subprotocols: []string{"v5.channel.k8s.io"}})
	if err != nil {
		b.Fatal(err)
	}
	defer c.CloseNow()
	c.SetReadLimit(1 << 20)
	b.SetBytes(frame)
	cpu0 := processCPU()
	b.ResetTimer()
	defer reportCPU(b, cpu0)
	got := 0
	for got < b.N*frame {
		_, msg, err := c.Read(ctx)
		if err != nil {
			b.Fatalf("after %d bytes: %v", got, err)
		}
		if len(msg) > 0 && msg[0] == 1 {
			got += len(msg) - 1
		}
	}
}

func wsAccept(key string) string {
	h := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	return base64.StdEncoding.EncodeToString(h[:])
}

// processCPU is this process's user and system CPU time so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCPU reports the CPU time the whole path (client, proxy, auth,
// agent and the stand-in API server: all in this process) spent per
// operation since cpu0: unlike the time per operation, the machine's load
// changes it little.
func reportCPU(b *testing.B, cpu0 time.Duration) {
	b.ReportMetric(float64((processCPU()-cpu0).Microseconds())/float64(b.N), "cpu-us/op")
}
