package identity

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestHashAndCheckPassword(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const pw = "correct horse battery staple"
	enc, err := HashPassword(ctx, pw)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(enc, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Fatalf("encoded hash %q has unexpected prefix", enc)
	}
	if strings.Contains(enc, pw) {
		t.Fatal("hash contains the password")
	}
	enc2, err := HashPassword(ctx, pw)
	if err != nil {
		t.Fatal(err)
	}
	if enc == enc2 {
		t.Fatal("two hashes of the same password are equal: salt not random")
	}
	if NeedsRehash(enc) {
		t.Error("NeedsRehash on a fresh hash = true")
	}

	tests := []struct {
		name string
		pw   string
		want bool
	}{
		{"right", pw, true},
		{"wrong", "correct horse battery stapler", false},
		{"empty", "", false},
		{"case", strings.ToUpper(pw), false},
		{"prefix", pw[:12], false},
		{"huge", strings.Repeat("x", MaxPasswordBytes+1), false},
	}
	for _, tt := range tests {
		got, err := CheckPassword(ctx, enc, tt.pw)
		if err != nil {
			t.Errorf("%s: CheckPassword error: %v", tt.name, err)
		}
		if got != tt.want {
			t.Errorf("%s: CheckPassword = %t, want %t", tt.name, got, tt.want)
		}
	}
}

func TestCheckPasswordOtherParams(t *testing.T) {
	t.Parallel()
	// A hash made with other (cheaper) parameters still verifies, and is
	// flagged for rehash.
	p := argonParams{memory: 64, time: 1, threads: 1, salt: []byte("0123456789abcdef")}
	p.key = argon2IDKeyForTest("pw-with-other-params", &p)
	enc := p.encode()
	ok, err := CheckPassword(context.Background(), enc, "pw-with-other-params")
	if err != nil || !ok {
		t.Fatalf("CheckPassword = %t, %v; want true, nil", ok, err)
	}
	if !NeedsRehash(enc) {
		t.Error("NeedsRehash = false for non-default parameters")
	}
}

func TestCheckPasswordMalformed(t *testing.T) {
	t.Parallel()
	good, err := HashPassword(context.Background(), "some long password")
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(good, "$")
	salt, key := parts[4], parts[5]
	tests := []string{
		"",
		"plain",
		"$argon2i$v=19$m=19456,t=2,p=1$" + salt + "$" + key,
		"$argon2id$v=16$m=19456,t=2,p=1$" + salt + "$" + key,
		"$argon2id$m=19456,t=2,p=1$" + salt + "$" + key,
		"$argon2id$v=19$m=19456,t=2$" + salt + "$" + key,
		"$argon2id$v=19$t=2,m=19456,p=1$" + salt + "$" + key,
		"$argon2id$v=19$m=0,t=2,p=1$" + salt + "$" + key,
		"$argon2id$v=19$m=19456,t=0,p=1$" + salt + "$" + key,
		"$argon2id$v=19$m=19456,t=2,p=0$" + salt + "$" + key,
		"$argon2id$v=19$m=4,t=2,p=1$" + salt + "$" + key,
		"$argon2id$v=19$m=99999999,t=2,p=1$" + salt + "$" + key,
		"$argon2id$v=19$m=19456,t=1000,p=1$" + salt + "$" + key,
		"$argon2id$v=19$m=19456,t=2,p=255$" + salt + "$" + key,
		"$argon2id$v=19$m=-1,t=2,p=1$" + salt + "$" + key,
		"$argon2id$v=19$m=+19456,t=2,p=1$" + salt + "$" + key,
		"$argon2id$v=19$m=019456,t=2,p=1$" + salt + "$" + key,
		"$argon2id$v=19$m=19456,t=2,p=1$" + salt + "==$" + key,
		"$argon2id$v=19$m=19456,t=2,p=1$" + salt + "$" + key + "$",
		"$argon2id$v=19$m=19456,t=2,p=1$$" + key,
		"$argon2id$v=19$m=19456,t=2,p=1$" + salt + "$",
		"$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$" + key,
		"$argon2id$v=19$m=19456,t=2,p=1$" + salt + "$" + key[:10],
		"$argon2id$v=19$m=19456,t=2,p=1$" + salt + "$" + strings.Repeat("A", 600),
		"x$argon2id$v=19$m=19456,t=2,p=1$" + salt + "$" + key,
	}
	for _, enc := range tests {
		ok, err := CheckPassword(context.Background(), enc, "some long password")
		if ok || !errors.Is(err, ErrMalformedHash) {
			t.Errorf("CheckPassword(%q) = %t, %v; want false, ErrMalformedHash", enc, ok, err)
		}
		if !NeedsRehash(enc) {
			t.Errorf("NeedsRehash(%q) = false for a malformed hash", enc)
		}
	}
}

func TestHashPasswordCancelledWhileWaiting(t *testing.T) {
	// Not parallel: it fills the package semaphore.
	for range cap(hashSem) {
		hashSem <- struct{}{}
	}
	defer func() {
		for range cap(hashSem) {
			<-hashSem
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := HashPassword(ctx, "a long enough password"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("HashPassword with full semaphore = %v, want DeadlineExceeded", err)
	}
	if _, err := CheckPassword(ctx, "$argon2id$v=19$m=64,t=1,p=1$MDEyMzQ1Njc4OWFiY2RlZg$MDEyMzQ1Njc4OWFiY2RlZg", "x"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("CheckPassword with full semaphore = %v, want DeadlineExceeded", err)
	}
}

func TestHashPasswordConcurrent(t *testing.T) {
	t.Parallel()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 8 {
		wg.Go(func() {
			pw := strings.Repeat(string(rune('a'+i)), 16)
			enc, err := HashPassword(context.Background(), pw)
			if err != nil {
				errs <- err
				return
			}
			if ok, err := CheckPassword(context.Background(), enc, pw); !ok || err != nil {
				errs <- errors.New("concurrent hash did not verify")
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestValidatePassword(t *testing.T) {
	t.Parallel()
	tests := []struct {
		pw string
		ok bool
	}{
		{"", false},
		{"short", false},
		{"elevenchars", false},
		{"twelve chars", true},
		{"ääääääääääää", true}, // 12 characters, 24 bytes
		{strings.Repeat("x", 1024), true},
		{strings.Repeat("x", 1025), false},
		{strings.Repeat("ä", 1024), true},
		{"valid prefix \xff\xfe bytes", false},
	}
	for _, tt := range tests {
		if err := ValidatePassword(tt.pw); (err == nil) != tt.ok {
			t.Errorf("ValidatePassword(%.20q…) = %v, want ok=%t", tt.pw, err, tt.ok)
		}
	}
}

func FuzzCheckPassword(f *testing.F) {
	f.Add("$argon2id$v=19$m=19456,t=2,p=1$MDEyMzQ1Njc4OWFiY2RlZg$MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY", "pw")
	f.Add("$argon2id$v=19$m=64,t=1,p=1$MDEyMzQ1Njc4OWFiY2RlZg$MDEyMzQ1Njc4OWFiY2RlZg", "")
	f.Add("$argon2id$v=19$m=,t=,p=$$", "x")
	f.Add("$$$$$", "x")
	f.Add("$argon2id$v=19$m=4294967295,t=4294967295,p=255$AA$AA", "x")
	f.Fuzz(func(t *testing.T, encoded, pw string) {
		p, err := parseArgon2id(encoded)
		if err != nil {
			if !errors.Is(err, ErrMalformedHash) {
				t.Fatalf("parse error %v does not wrap ErrMalformedHash", err)
			}
			return
		}
		if p.memory > maxArgonMemoryKiB || p.time > maxArgonTime || p.threads > maxArgonThreads ||
			len(p.salt) > maxSaltLen || len(p.key) > maxKeyLen || p.memory < 8*uint32(p.threads) {
			t.Fatalf("parser accepted out-of-bounds parameters %+v", p)
		}
		// Re-encoding a parsed hash gives back the same string: the parser
		// accepts one spelling only.
		if got := p.encode(); got != encoded {
			t.Fatalf("re-encoded %q, want %q", got, encoded)
		}
		// Only run the (expensive) hash for cheap parameters.
		if p.memory <= 1024 && p.time <= 2 {
			if _, err := CheckPassword(context.Background(), encoded, pw); err != nil {
				t.Fatalf("CheckPassword after successful parse: %v", err)
			}
		}
	})
}

func TestDummyHashMatchesNoPassword(t *testing.T) {
	t.Parallel()
	a, err := DummyHash()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := DummyHash()
	if a == b || NeedsRehash(a) {
		t.Fatalf("dummy hashes %q %q: want distinct, current parameters", a, b)
	}
	for _, pw := range []string{"", "warden-dummy-password-for-timing", "a good long password"} {
		if ok, err := CheckPassword(context.Background(), a, pw); ok || err != nil {
			t.Errorf("CheckPassword(dummy, %q) = %t, %v", pw, ok, err)
		}
	}
}
