// Package layout holds the rule of which package may import which: the
// design the README's architecture picture shows, written down so that a
// test keeps it true (as periph keeps its conn module free of its host
// drivers by module boundaries).
//
// The core of a gate (the controller, the verifier, the cache) is pure: it
// links no device driver, no serial library, no QR decoder. Drivers sit at
// the edge and only the wiring (agent) and diag import them. The wire
// format (feed) knows nothing of the gate's storage, and the binary
// installed on gates carries no issuer.
package layout

// Rule says that Package must not depend, directly or through others, on
// any of Forbidden (import paths, or prefixes of them ending in "/").
type Rule struct {
	Package   string
	Forbidden []string
	Why       string
}

// drivers are the modules that reach devices or decode pictures.
var drivers = []string{"periph.io/x/host/", "go.bug.st/serial", "github.com/makiuchi-d/gozxing", "golang.org/x/text/"}

// Rules are the import rules of the tree.
var Rules = []Rule{
	{"gateagent/gate", append(drivers, "gateagent/scanner", "gateagent/cache"), "the controller is pure logic over narrow interfaces: no driver, no storage engine"},
	{"gateagent/verify", append(drivers, "go.etcd.io/bbolt"), "the token check is pure: its store is an interface"},
	{"gateagent/cache", drivers, "storage links no device driver"},
	{"gateagent/hw", []string{"periph.io/x/host/"}, "hw holds the interfaces; the periph driver is hw/gpiohw"},
	{"gateagent/feed", []string{"gateagent/cache", "go.etcd.io/bbolt"}, "the feed is a wire format, independent of how a gate stores it"},
	{"gateagent/cmd/issuer", []string{"gateagent/cache"}, "the issuer does not link the gate's storage"},
	{"gateagent/cmd/gateagent", []string{"gateagent/issuer", "gateagent/demo"}, "the binary installed on gates carries no issuer and no identity-number validator"},
	{"gateagent/cmd/gateagent", []string{"gateagent/internal/churn"}, "the flash harness never ships"},
}
