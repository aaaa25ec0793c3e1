// Package identity holds Warden's local users and the credentials that prove
// them: argon2id password hashes, TOTP second factors with replay protection,
// a throttle on failed attempts per source (never a lockout of the account),
// and opaque tokens stored only as hashes.
//
// It is core code: plain values in, plain values out. Persisting a User and
// serialising concurrent updates to it are the caller's job (the auth service
// over the storage layer).
package identity
