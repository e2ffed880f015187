package keysync

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"

	"gateagent/feed"
)

// Trouble is the kind of failure a feed round met, judged from the error's
// type (never its text): the agent's log and diag each say what to do
// about it, from the same judgement.
type Trouble uint8

// The kinds of trouble.
const (
	TroubleOther       Trouble = iota // anything else (an HTTP status, a full disk, …)
	TroubleUnknownKey                 // signed by a key the gate does not trust (feed.trusted_keys)
	TroubleSignature                  // a signature that does not verify (feed.trusted_keys, or tampering)
	TroubleMisdirected                // a genuine document, not the one asked for (the station proxy)
	TroubleFormat                     // not a feed document (feed.url)
	TroubleTLSTrust                   // the issuer's certificate is not signed by a CA the gate trusts (feed.ca_file)
	TroubleTLSName                    // the issuer's certificate is for another name (feed.url, feed.server_name)
	TroubleNotTLS                     // no TLS at that address (http/https in feed.url)
	TroubleTLSRefused                 // the issuer refused the handshake (feed.cert_file, feed.key_file)
	TroubleNetwork                    // the issuer cannot be reached (network, proxy)
	TroubleRedirect                   // the issuer's address redirects elsewhere (feed.url)
)

var troubleNames = [...]string{"other", "unknown_key", "signature", "misdirected", "format", "tls_trust", "tls_name", "not_tls", "tls_refused", "network", "redirect"}

// String names the trouble in snake_case, for logs and JSON.
func (t Trouble) String() string {
	if int(t) < len(troubleNames) {
		return troubleNames[t]
	}
	return "other"
}

// Diagnose judges err, from a feed round or a probe, by its type.
func Diagnose(err error) Trouble {
	var (
		unknownCA x509.UnknownAuthorityError
		hostErr   x509.HostnameError
		certErr   x509.CertificateInvalidError
		recErr    tls.RecordHeaderError
		opErr     *net.OpError
		netErr    net.Error
	)
	switch {
	case err == nil:
		return TroubleOther
	case errors.Is(err, feed.ErrSignature):
		return TroubleSignature
	case errors.Is(err, feed.ErrUnknownKey):
		return TroubleUnknownKey
	case errors.Is(err, ErrMisdirected):
		return TroubleMisdirected
	case errors.Is(err, feed.ErrFormat):
		return TroubleFormat
	case errors.Is(err, ErrRedirect):
		return TroubleRedirect
	case errors.As(err, &unknownCA), errors.As(err, &certErr):
		return TroubleTLSTrust
	case errors.As(err, &hostErr):
		return TroubleTLSName
	case errors.As(err, &recErr):
		return TroubleNotTLS
	case errors.As(err, &opErr) && opErr.Op == "remote error":
		// crypto/tls reports an alert the issuer sent as a net.OpError
		// with this Op: it refused the handshake, mostly the gate's
		// client certificate.
		return TroubleTLSRefused
	case errors.As(err, &netErr):
		return TroubleNetwork
	}
	return TroubleOther
}

// fix is what the agent's log says to do about t: the config key to
// look at, in a few words (diag says more).
func (t Trouble) fix() string {
	switch t {
	case TroubleUnknownKey:
		return "add the issuer's public key (issuer pubkey) to feed.trusted_keys"
	case TroubleSignature:
		return "check feed.trusted_keys against `issuer pubkey`, and what lies between the gate and the issuer"
	case TroubleMisdirected:
		return "check the station proxy's cache rules (the head must never be cached)"
	case TroubleFormat:
		return "check that feed.url points at the issuer's feed"
	case TroubleTLSTrust:
		return "the issuer's certificate is not signed by the CA the gate trusts: check feed.ca_file (the station CA)"
	case TroubleTLSName:
		return "the issuer's certificate is for another name: check feed.url or feed.server_name"
	case TroubleNotTLS:
		return "the issuer does not speak TLS there: check http/https in feed.url"
	case TroubleTLSRefused:
		return "the issuer refused the handshake: check feed.cert_file and feed.key_file (mutual TLS)"
	case TroubleRedirect:
		return "the feed's address redirects to another host: set feed.url to the address that answers itself (the issuer or the station proxy)"
	case TroubleNetwork:
		return "the issuer is unreachable: check the gate's network path to it (cable, station network, proxy); codes are checked on the cache meanwhile"
	}
	return "check feed.url and the issuer's logs"
}
