// Package ca holds a cluster's three certificate authorities and issues the
// short-lived certificates that carry Warden identities:
//
//   - the user SSH CA (Ed25519) signs user certificates whose principals are
//     OS logins and whose extensions carry role names, traits and access
//     request IDs;
//   - the host SSH CA (Ed25519) signs node and proxy host certificates;
//   - the TLS CA (ECDSA P-256) signs X.509 client certificates with the same
//     identity, and server certificates for Warden's own endpoints.
//
// It also decodes identities back out of certificates. Decoding treats the
// certificate as hostile input: every field is bounded and validated and
// errors are returned, never panics. Decoding does not check signatures;
// callers verify the certificate first (ssh.CertChecker, x509 Verify against
// CertPool) and decode after.
package ca
