// Package issuer is the reference issuer of electronic temporary ride ID
// certificates: it follows the railway's issuance rules (spec issuance.md),
// keeps its state in a bbolt file, and serves the signed key feed that gates
// sync from. It plays the railway's side in development, tests and the demo.
//
// Names and identity numbers stay here: the feed carries certificate IDs,
// keys and validity only, and nothing is logged but certificate IDs.
package issuer

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	bolt "go.etcd.io/bbolt"

	"gateagent/feed"
	"gateagent/issuer/idcard"
	"gateagent/verify"
)

// Rules of issuance.md.
const (
	Validity      = 24 * time.Hour // rule 4
	MonthlyLimit  = 3              // rule 5
	RenewalWindow = 3 * time.Hour  // rule 6
	// DocResidentID is the only document type accepted (rule 1).
	DocResidentID = "resident_id"
)

// MaxMaxAge bounds the feed's max age: a cache older than a week holds
// nothing a gate should trust.
const MaxMaxAge = 7 * 24 * time.Hour

// CST is China Standard Time, in which natural months are counted.
var CST = time.FixedZone("CST", 8*60*60)

// Options configure an issuer. Zero fields take the defaults.
type Options struct {
	// Signer signs the feed. Required.
	Signer *feed.Signer
	// Fleet are the gate fleet's public keys, to which every page's
	// certificate keys are sealed (HPKE): one, two during a rotation.
	// Required. The issuer never holds a fleet private key.
	Fleet []feed.FleetPublic
	// PageSize is the number of changes in a log page and of certificates
	// in a snapshot page. Default 16384 (about 1 MB a page).
	PageSize int
	// MaxAge is how old a gate's cache may grow before it counts as stale.
	// Default 30 minutes.
	MaxAge time.Duration
	// LogRetention is how long changes stay in the log; a gate further
	// behind resyncs from a snapshot. Default 7 days.
	LogRetention time.Duration
	// DocCacheBytes bounds the signed pages kept in memory. Default 64 MB.
	DocCacheBytes int
	// Now is the issuer's clock. Default time.Now.
	Now func() time.Time
	// Rand is the source of certificate IDs, keys and the epoch. Default
	// crypto/rand.
	Rand io.Reader
	// Logger; default discards.
	Logger *slog.Logger
	// NoSync skips fsync on commits: for benchmarks' setup only.
	NoSync bool
}

// Issuer is the reference issuer. Its methods are safe for concurrent use.
type Issuer struct {
	db    *bolt.DB
	opt   Options
	epoch uint64
	docs  *docCache
	// mu serialises applications, so that the monthly count and the
	// renewal rule see every success before them.
	mu sync.Mutex
}

// Open opens or creates the issuer's state file.
func Open(path string, o Options) (*Issuer, error) {
	if o.Signer == nil {
		return nil, errors.New("issuer: no signing key: run `issuer keygen` and pass --key")
	}
	switch {
	case len(o.Fleet) == 0:
		return nil, errors.New("issuer: no fleet public key to seal certificate keys to: run `issuer fleet-keygen` and pass --fleet-key")
	case len(o.Fleet) > feed.MaxWraps:
		return nil, fmt.Errorf("issuer: %d fleet keys, at most %d", len(o.Fleet), feed.MaxWraps)
	}
	for i, a := range o.Fleet {
		for _, b := range o.Fleet[:i] {
			if a.ID == b.ID {
				return nil, fmt.Errorf("issuer: fleet key %s given twice", a.ID)
			}
		}
	}
	if o.PageSize <= 0 {
		o.PageSize = 16384
	}
	if o.PageSize > feed.MaxRecords {
		return nil, fmt.Errorf("issuer: page size %d, at most %d", o.PageSize, feed.MaxRecords)
	}
	switch {
	case o.MaxAge == 0:
		o.MaxAge = 30 * time.Minute
	case o.MaxAge < time.Minute || o.MaxAge > MaxMaxAge:
		return nil, fmt.Errorf("issuer: max age %v: between 1m and %v (gates raise the stale alarm past it)", o.MaxAge, MaxMaxAge)
	}
	if o.LogRetention <= 0 {
		o.LogRetention = 7 * 24 * time.Hour
	}
	if o.DocCacheBytes == 0 {
		o.DocCacheBytes = 64 << 20
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Rand == nil {
		o.Rand = rand.Reader
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return nil, fmt.Errorf("issuer: open state %s: %w (is another issuer running on it?)", path, err)
	}
	db.NoSync = o.NoSync
	is := &Issuer{db: db, opt: o, docs: newDocCache(o.DocCacheBytes)}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bucketMeta)
		is.epoch = getU64(meta, keyEpoch)
		if is.epoch == 0 {
			var b [8]byte
			for is.epoch == 0 {
				if _, err := io.ReadFull(o.Rand, b[:]); err != nil {
					return err
				}
				is.epoch = binary.BigEndian.Uint64(b[:])
			}
			return meta.Put(keyEpoch, u64(is.epoch))
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("issuer: init state %s: %w", path, err)
	}
	return is, nil
}

// Close closes the state file.
func (is *Issuer) Close() error { return is.db.Close() }

// Epoch identifies this issuer's feed.
func (is *Issuer) Epoch() uint64 { return is.epoch }

// Application is a request for a certificate (rule 2), with the outcome of
// the live face check (rule 3) as an input.
type Application struct {
	Name      string `json:"name"`
	DocType   string `json:"doc_type"`
	DocNumber string `json:"doc_number"`
	City      string `json:"city"`
	// FaceCheck is "passed" or "failed".
	FaceCheck string `json:"face_check"`
}

// Refusal is an application refused under a rule: Code for programs,
// Message for the applicant.
type Refusal struct {
	Code    string `json:"error"`
	Message string `json:"message"`
}

func (r *Refusal) Error() string { return r.Code + ": " + r.Message }

func refuse(code, format string, a ...any) *Refusal {
	return &Refusal{Code: code, Message: fmt.Sprintf(format, a...)}
}

// Certificate is an issued certificate as the applicant sees it. The key is
// the phone's secret; it is returned to the phone once, at issuance.
type Certificate struct {
	ID        verify.CertID `json:"cert_id"`
	Key       string        `json:"key,omitempty"`
	NotBefore time.Time     `json:"not_before"`
	NotAfter  time.Time     `json:"not_after"`
	Status    string        `json:"status"`
	City      string        `json:"city,omitempty"`
}

var otherDocs = map[string]string{
	"passport":                    "a passport",
	"foreign_permanent_residence": "a foreigner's permanent residence ID card",
	"hk_macao_pass":               "a Mainland travel permit for Hong Kong and Macao residents",
	"taiwan_pass":                 "a Mainland travel permit for Taiwan residents",
	"hk_macao_taiwan_residence":   "a residence permit for Hong Kong, Macao and Taiwan residents",
	"household_register":          "a household register",
	"temporary_resident_id":       "a temporary resident identity card",
	"military_id":                 "a military ID",
	"foreign_passport":            "a foreign passport",
	"exit_entry_permit":           "an exit-entry permit",
}

// check applies rules 1 to 3 to the form; it reads no state.
func (is *Issuer) check(a *Application, now time.Time) (idcard.Number, *Refusal) {
	if a.DocType != DocResidentID {
		what, ok := otherDocs[a.DocType]
		if !ok {
			what = fmt.Sprintf("the document type %q", clip(a.DocType))
		}
		return "", refuse("document_not_accepted",
			"this certificate cannot be issued for %s: only holders of a Chinese resident identity card may apply; ask at the station's ticket window or police window", what)
	}
	num, _, err := idcard.Parse(a.DocNumber, now)
	if err != nil {
		code := "document_number_invalid"
		switch {
		case errors.Is(err, idcard.ErrCheck):
			code = "check_character"
		case errors.Is(err, idcard.ErrArea):
			code = "area_code"
		case errors.Is(err, idcard.ErrBirthDate):
			code = "birth_date"
		}
		return "", refuse(code, "%s", idDetail(err))
	}
	if r := checkText("name", a.Name, 64); r != nil {
		return "", r
	}
	if r := checkText("city", a.City, 64); r != nil {
		return "", r
	}
	switch a.FaceCheck {
	case "passed":
	case "failed":
		return "", refuse("face_check_failed", "the live face check did not match the identity record: try again in good light, or ask at the station's police window")
	default:
		return "", refuse("face_check_missing", "face_check must be \"passed\" or \"failed\", the outcome of the live face check")
	}
	return num, nil
}

func checkText(field, s string, maxRunes int) *Refusal {
	s = strings.TrimSpace(s)
	switch {
	case s == "":
		return refuse("missing_"+field, "the %s is required", field)
	case !utf8.ValidString(s) || utf8.RuneCountInString(s) > maxRunes:
		return refuse("invalid_"+field, "the %s must be valid text of at most %d characters", field, maxRunes)
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return refuse("invalid_"+field, "the %s holds a control character", field)
		}
	}
	return nil
}

func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}

// monthStart is the first instant of t's natural month in CST.
func monthStart(t time.Time) time.Time {
	c := t.In(CST)
	return time.Date(c.Year(), c.Month(), 1, 0, 0, 0, 0, CST)
}

// Apply decides an application under rules 1 to 6 and, on success, issues
// a certificate valid for 24 hours and logs it to the feed. A refusal is a
// *Refusal with the applicant's message; any other error is the issuer's.
func (is *Issuer) Apply(a Application) (Certificate, error) {
	now := is.opt.Now().UTC()
	num, r := is.check(&a, now)
	if r != nil {
		return Certificate{}, r
	}
	doc := string(num)
	is.mu.Lock()
	defer is.mu.Unlock()
	var out Certificate
	err := is.db.Update(func(tx *bolt.Tx) error {
		month := monthStart(now)
		recent, err := personCerts(tx, doc, month.Add(-Validity))
		if err != nil {
			return err
		}
		n := 0
		for _, c := range recent {
			if !c.NotBefore.Before(month) {
				n++
			}
		}
		if n >= MonthlyLimit { // rule 5
			return refuse("monthly_limit",
				"this person has had %d certificates this month (counted in China Standard Time, from %s): a paper temporary ID certificate is issued at the station police window",
				n, month.Format("2006-01-02 15:04 MST"))
		}
		for _, c := range recent { // rule 6
			if c.Revoked || !c.NotAfter.After(now) {
				continue
			}
			if left := c.NotAfter.Sub(now); left > RenewalWindow {
				return refuse("still_valid",
					"a certificate for this person is valid until %s: a new one can be applied for in the last 3 hours before it expires, from %s",
					c.NotAfter.In(CST).Format("2006-01-02 15:04 MST"), c.NotAfter.Add(-RenewalWindow).In(CST).Format("2006-01-02 15:04 MST"))
			}
		}
		s := stored{}
		if _, err := io.ReadFull(is.opt.Rand, s.ID[:]); err != nil {
			return fmt.Errorf("random certificate ID: %w", err)
		}
		if _, err := io.ReadFull(is.opt.Rand, s.Key[:]); err != nil {
			return fmt.Errorf("random key: %w", err)
		}
		if tx.Bucket(bucketCerts).Get(s.ID[:]) != nil {
			return fmt.Errorf("random certificate ID %s already issued: the random source is broken", s.ID)
		}
		s.NotBefore = now.Truncate(time.Second)
		s.NotAfter = s.NotBefore.Add(Validity)
		h := Holder{Name: strings.TrimSpace(a.Name), DocType: a.DocType, DocNumber: doc, City: strings.TrimSpace(a.City), AppliedAt: now}
		hv, err := json.Marshal(h)
		if err != nil {
			return err
		}
		if err := is.appendLog(tx, logIssue, &s, now); err != nil {
			return err
		}
		if err := tx.Bucket(bucketHolders).Put(s.ID[:], hv); err != nil {
			return err
		}
		if err := tx.Bucket(bucketPersons).Put(personKey(doc, s.NotBefore, s.ID), nil); err != nil {
			return err
		}
		out = Certificate{ID: s.ID, Key: hex.EncodeToString(s.Key[:]), NotBefore: s.NotBefore, NotAfter: s.NotAfter, Status: "valid", City: h.City}
		return nil
	})
	if err != nil {
		var r *Refusal
		if errors.As(err, &r) {
			is.opt.Logger.Info("application refused", "code", r.Code)
			return Certificate{}, r
		}
		return Certificate{}, fmt.Errorf("issuer: apply: %w", err)
	}
	is.opt.Logger.Info("certificate issued", "cert", out.ID, "not_after", out.NotAfter)
	return out, nil
}

// appendLog numbers a change, stores it in the log, and writes the
// certificate record with its sequence (issue) or revoke sequence (revoke).
func (is *Issuer) appendLog(tx *bolt.Tx, kind byte, s *stored, now time.Time) error {
	meta := tx.Bucket(bucketMeta)
	seq := getU64(meta, keyHead) + 1
	if kind == logIssue {
		s.Seq = seq
	} else {
		s.RevokeSeq = seq
		s.Revoked = true
	}
	if err := tx.Bucket(bucketLog).Put(u64(seq), logEntry(kind, s.ID, now)); err != nil {
		return err
	}
	if err := tx.Bucket(bucketCerts).Put(s.ID[:], encodeCert(s)); err != nil {
		return err
	}
	return meta.Put(keyHead, u64(seq))
}

// ErrUnknownCert: no certificate has that ID.
var ErrUnknownCert = errors.New("no certificate with that ID: check the ID")

// Revoke revokes a certificate (rule 9). Revoking twice is not an error.
func (is *Issuer) Revoke(id verify.CertID) error {
	now := is.opt.Now().UTC()
	err := is.db.Update(func(tx *bolt.Tx) error {
		s, err := getCert(tx, id)
		if err != nil {
			return err
		}
		if s.Revoked {
			return nil
		}
		return is.appendLog(tx, logRevok, &s, now)
	})
	if errors.Is(err, errNotFound) {
		return fmt.Errorf("issuer: revoke %s: %w", id, ErrUnknownCert)
	}
	if err != nil {
		return fmt.Errorf("issuer: revoke %s: %w", id, err)
	}
	is.opt.Logger.Info("certificate revoked", "cert", id)
	return nil
}

// History returns the certificates applied for in the last month (rule 7)
// for a document number, newest first.
func (is *Issuer) History(docNumber string) ([]Certificate, error) {
	now := is.opt.Now().UTC()
	num, _, err := idcard.Parse(docNumber, now)
	if err != nil {
		return nil, &Refusal{Code: "document_number_invalid", Message: idDetail(err)}
	}
	var out []Certificate
	err = is.db.View(func(tx *bolt.Tx) error {
		cs, err := personCerts(tx, string(num), now.In(CST).AddDate(0, -1, 0))
		if err != nil {
			return err
		}
		for i := len(cs) - 1; i >= 0; i-- {
			h, err := getHolder(tx, cs[i].ID)
			if err != nil {
				return err
			}
			out = append(out, certView(&cs[i], now, h.City))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("issuer: history: %w", err)
	}
	return out, nil
}

func certView(s *stored, now time.Time, city string) Certificate {
	st := "valid"
	switch {
	case s.Revoked:
		st = "revoked"
	case !now.Before(s.NotAfter):
		st = "expired"
	case now.Before(s.NotBefore):
		st = "not_yet_valid"
	}
	return Certificate{ID: s.ID, NotBefore: s.NotBefore, NotAfter: s.NotAfter, Status: st, City: city}
}

// Token returns the TR1 token the holder's phone shows at time at (rule 8).
// A revoked or expired certificate still has tokens: the gate refuses them.
func (is *Issuer) Token(id verify.CertID, at time.Time) (verify.Token, error) {
	var s stored
	err := is.db.View(func(tx *bolt.Tx) error {
		var err error
		s, err = getCert(tx, id)
		return err
	})
	if errors.Is(err, errNotFound) {
		return verify.Token{}, fmt.Errorf("issuer: token of %s: %w", id, ErrUnknownCert)
	}
	if err != nil {
		return verify.Token{}, fmt.Errorf("issuer: token of %s: %w", id, err)
	}
	return verify.NewToken(&s.Key, id, verify.StepOf(at)), nil
}

// idDetail is what is wrong with a document number, for the applicant.
func idDetail(err error) string {
	var e *idcard.Error
	if errors.As(err, &e) {
		return e.Reason()
	}
	return err.Error()
}
