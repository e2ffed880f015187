package layout

import (
	"os/exec"
	"strings"
	"testing"
)

// TestRules checks every rule against `go list -deps` of the tree.
func TestRules(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Fatalf("the go command is needed to list dependencies: %v", err)
	}
	for _, r := range Rules {
		out, err := exec.Command("go", "list", "-deps", r.Package).Output()
		if err != nil {
			t.Fatalf("go list -deps %s: %v", r.Package, err)
		}
		deps := strings.Fields(string(out))
		if len(deps) == 0 || deps[len(deps)-1] != r.Package {
			t.Fatalf("go list -deps %s listed %d packages, not ending with it", r.Package, len(deps))
		}
		for _, d := range deps {
			for _, f := range r.Forbidden {
				if d == f || (strings.HasSuffix(f, "/") && strings.HasPrefix(d, f)) || strings.HasPrefix(d, f+"/") {
					t.Errorf("%s depends on %s: %s", r.Package, d, r.Why)
				}
			}
		}
	}
}
