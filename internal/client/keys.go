package client

import "golang.org/x/crypto/ssh"

func marshalPub(pub ssh.PublicKey) []byte { return ssh.MarshalAuthorizedKey(pub) }
