package secrets

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func newBox(t *testing.T) (*Box, []byte) {
	t.Helper()
	key := make([]byte, KeySize)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	b, err := New(key)
	if err != nil {
		t.Fatal(err)
	}
	return b, key
}

func TestSealOpen(t *testing.T) {
	b, _ := newBox(t)
	secret := []byte(`{"api_key": "SG.abc"}`)
	sealed, err := b.Seal(secret, "ten_1")
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, []byte("SG.abc")) {
		t.Fatal("sealed value holds the plaintext")
	}
	again, _ := b.Seal(secret, "ten_1")
	if bytes.Equal(sealed, again) {
		t.Fatal("two seals of one value are equal: the nonce is not random")
	}
	got, err := b.Open(sealed, "ten_1")
	if err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("open: %q, %v", got, err)
	}
	other, _ := newBox(t)
	tampered := bytes.Clone(sealed)
	tampered[len(tampered)-1] ^= 1
	for name, open := range map[string]func() ([]byte, error){
		"other tenant": func() ([]byte, error) { return b.Open(sealed, "ten_2") },
		"other key":    func() ([]byte, error) { return other.Open(sealed, "ten_1") },
		"tampered":     func() ([]byte, error) { return b.Open(tampered, "ten_1") },
		"truncated":    func() ([]byte, error) { return b.Open(sealed[:10], "ten_1") },
		"empty":        func() ([]byte, error) { return b.Open(nil, "ten_1") },
	} {
		if _, err := open(); !errors.Is(err, ErrOpen) {
			t.Errorf("%s: got %v, want ErrOpen", name, err)
		}
	}
}

func TestParseKey(t *testing.T) {
	_, key := newBox(t)
	for _, s := range []string{base64.StdEncoding.EncodeToString(key), base64.RawURLEncoding.EncodeToString(key),
		hex.EncodeToString(key), " " + base64.StdEncoding.EncodeToString(key) + "\n"} {
		got, err := ParseKey(s)
		if err != nil || !bytes.Equal(got, key) {
			t.Errorf("ParseKey(%q) = %x, %v", s, got, err)
		}
	}
	for _, s := range []string{"", "short", base64.StdEncoding.EncodeToString(key[:16]), "correct horse battery staple"} {
		if _, err := ParseKey(s); err == nil {
			t.Errorf("ParseKey(%q) accepted", s)
		}
	}
	if _, err := New(key[:16]); err == nil {
		t.Error("New accepted a 16-byte key")
	}
}

func TestLoadOrCreateKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data", "secret.key")
	key, created, err := LoadOrCreateKey(path)
	if err != nil || !created || len(key) != KeySize {
		t.Fatalf("create: %x %v %v", key, created, err)
	}
	info, err := os.Stat(path)
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode: %v %v", info, err)
	}
	again, created, err := LoadOrCreateKey(path)
	if err != nil || created || !bytes.Equal(again, key) {
		t.Fatalf("load: %x %v %v", again, created, err)
	}
	if err := os.WriteFile(path, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadOrCreateKey(path); err == nil {
		t.Fatal("a garbage key file was accepted")
	}
}

func FuzzOpen(f *testing.F) {
	b, err := New(bytes.Repeat([]byte{7}, KeySize))
	if err != nil {
		f.Fatal(err)
	}
	sealed, _ := b.Seal([]byte("x"), "t")
	f.Add(sealed)
	f.Add([]byte{1})
	// Nothing but what Seal made opens: a changed byte anywhere fails.
	f.Fuzz(func(t *testing.T, data []byte) {
		if _, err := b.Open(data, "t"); err == nil && !bytes.Equal(data, sealed) {
			t.Fatalf("%x opened", data)
		}
	})
}
