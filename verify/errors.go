package verify

import "errors"

// Errors returned by this package. Each is wrapped with the detail of what
// was wrong; test for them with errors.Is.
var (
	// ErrMalformed: the text is not a TR1 token (check 1 of the spec).
	ErrMalformed = errors.New("malformed token")

	// ErrStore: the key cache could not be read, so no decision was made.
	// The gate stays locked; the operator should run `gateagent diag`.
	ErrStore = errors.New("key cache unreadable")

	// ErrConfig: a Config or Policy is not usable.
	ErrConfig = errors.New("invalid verifier configuration")
)
