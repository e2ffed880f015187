package secret_test

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"gateagent/internal/secret"
)

func TestRefs(t *testing.T) {
	for _, ok := range []string{"gateagent-cache-key", "fleet.2026_b", "/etc/gateagent/cache.key"} {
		if err := secret.CheckRef(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "relative/path", "name with space", "/etc/../x", "..", "key\n"} {
		if err := secret.CheckRef(bad); !errors.Is(err, secret.ErrRef) {
			t.Errorf("%q: %v, want ErrRef", bad, err)
		}
	}
}

// A key file is read only when others cannot read it and the group cannot
// write it: 0600 and 0640 (root:gateagent) are fine, 0644 and 0660 not.
func TestKeyFileModes(t *testing.T) {
	dir := t.TempDir()
	for mode, ok := range map[fs.FileMode]bool{0o600: true, 0o640: true, 0o400: true, 0o644: false, 0o660: false, 0o604: false} {
		p := filepath.Join(dir, "k"+mode.String())
		os.WriteFile(p, []byte("0123456789"), 0o600)
		os.Chmod(p, mode)
		b, src, err := secret.Read(p, 64)
		if ok && (err != nil || string(b) != "0123456789" || src.Kind != secret.File || src.Sealed) {
			t.Errorf("mode %04o: %q %+v %v", mode, b, src, err)
		}
		if !ok && (!errors.Is(err, secret.ErrExposed) || !strings.Contains(err.Error(), p)) {
			t.Errorf("mode %04o: %v, want ErrExposed", mode, err)
		}
	}
	if _, _, err := secret.Read(filepath.Join(dir, "absent"), 64); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("absent: %v", err)
	}
	big := filepath.Join(dir, "big")
	os.WriteFile(big, make([]byte, 65), 0o600)
	if _, _, err := secret.Read(big, 64); !errors.Is(err, secret.ErrSize) {
		t.Errorf("too big: %v", err)
	}
	if _, _, err := secret.Read(dir, 64); err == nil {
		t.Error("a directory read as a key")
	}
}

// A credential is read from $CREDENTIALS_DIRECTORY when the service runs
// under systemd; it counts as sealed when a sealed file of that name is in
// a credstore.
func TestCredentialsDirectory(t *testing.T) {
	creds, store := t.TempDir(), t.TempDir()
	old := secret.CredstoreDirs
	secret.CredstoreDirs = []string{store}
	t.Cleanup(func() { secret.CredstoreDirs = old })
	t.Setenv("CREDENTIALS_DIRECTORY", creds)
	os.WriteFile(filepath.Join(creds, "gateagent-cache-key"), []byte("k"), 0o400)
	b, src, err := secret.Read("gateagent-cache-key", 64)
	if err != nil || string(b) != "k" || src.Kind != secret.Credential || src.Sealed {
		t.Fatalf("%q %+v %v", b, src, err)
	}
	os.WriteFile(filepath.Join(store, "gateagent-cache-key"), []byte("sealed"), 0o600)
	if _, src, _ := secret.Read("gateagent-cache-key", 64); !src.Sealed || !strings.Contains(src.String(), "sealed") {
		t.Fatalf("with a sealed file in the credstore: %+v", src)
	}
	if _, _, err := secret.Read("other", 64); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a credential the unit does not load: %v", err)
	}
	t.Setenv("CREDENTIALS_DIRECTORY", "")
	os.Remove(filepath.Join(store, "gateagent-cache-key"))
	if _, _, err := secret.Read("gateagent-cache-key", 64); !errors.Is(err, secret.ErrNoCredentials) {
		t.Fatalf("outside the service, no credstore file: %v, want ErrNoCredentials", err)
	}
}

// Outside the service, a sealed credential in the credstore is decrypted
// with systemd-creds: here with a host key of the test's own
// (SYSTEMD_CREDENTIAL_SECRET), as `systemd-creds encrypt --with-key=host`
// seals it on a board without TPM2. A credential sealed under another host
// key, or under another name, does not decrypt.
func TestSystemdCredsRoundTrip(t *testing.T) {
	if _, err := exec.LookPath("systemd-creds"); err != nil {
		t.Fatalf("systemd-creds is needed (Debian: systemd): %v", err)
	}
	dir, store := t.TempDir(), t.TempDir()
	old := secret.CredstoreDirs
	secret.CredstoreDirs = []string{store}
	t.Cleanup(func() { secret.CredstoreDirs = old })
	t.Setenv("CREDENTIALS_DIRECTORY", "")
	t.Setenv("SYSTEMD_CREDENTIAL_SECRET", filepath.Join(dir, "host.secret"))
	key := bytes.Repeat([]byte{0xa7}, 32)
	in := filepath.Join(dir, "cache.key")
	os.WriteFile(in, key, 0o600)
	out := filepath.Join(store, "gateagent-cache-key")
	if b, err := exec.Command("systemd-creds", "encrypt", "--with-key=host", "--name=gateagent-cache-key", in, out).CombinedOutput(); err != nil {
		t.Fatalf("systemd-creds encrypt: %v: %s", err, b)
	}
	sealed, _ := os.ReadFile(out)
	if bytes.Contains(sealed, key) {
		t.Fatal("the sealed credential holds the key in the clear")
	}
	b, src, err := secret.Read("gateagent-cache-key", 64)
	if err != nil || !bytes.Equal(b, key) || src.Kind != secret.Credstore || !src.Sealed || src.Path != out {
		t.Fatalf("decrypted %x, %+v, %v", b, src, err)
	}
	// The same file under another name is refused.
	os.Rename(out, filepath.Join(store, "other-name"))
	if _, _, err := secret.Read("other-name", 64); !errors.Is(err, secret.ErrDecrypt) {
		t.Fatalf("renamed credential: %v, want ErrDecrypt", err)
	}
	// Another machine's host key does not open it.
	os.Rename(filepath.Join(store, "other-name"), out)
	t.Setenv("SYSTEMD_CREDENTIAL_SECRET", filepath.Join(dir, "another-host.secret"))
	exec.Command("systemd-creds", "encrypt", "--with-key=host", "--name=x", in, filepath.Join(dir, "x.cred")).Run() // makes that host key
	if _, _, err := secret.Read("gateagent-cache-key", 64); !errors.Is(err, secret.ErrDecrypt) {
		t.Fatalf("another host key: %v, want ErrDecrypt", err)
	}
}
