package issuer_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"image/png"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gateagent/feed"
	"gateagent/feed/feedtest"
	"gateagent/issuer"
	"gateagent/issuer/idcard"
	"gateagent/issuer/issuertest"
	"gateagent/qrcode"
	"gateagent/verify"
)

// A valid resident ID number: 17 digits and its check character.
func idNumber(t *testing.T, first17 string) string {
	t.Helper()
	c := idcard.CheckChar(first17)
	if c == 0 {
		t.Fatalf("bad test number %q", first17)
	}
	return first17 + string(c)
}

type client struct {
	t   *testing.T
	url string
}

// post sends v as JSON and decodes the answer into out; it returns the
// status code.
func (c client) post(path string, v, out any) int {
	c.t.Helper()
	b, _ := json.Marshal(v)
	resp, err := http.Post(c.url+path, "application/json", bytes.NewReader(b))
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			c.t.Fatalf("%s: answer: %v", path, err)
		}
	}
	return resp.StatusCode
}

func (c client) apply(a issuer.Application) (issuer.Certificate, *issuer.Refusal) {
	c.t.Helper()
	var raw json.RawMessage
	code := c.post("v1/applications", a, &raw)
	switch code {
	case http.StatusCreated:
		var cert issuer.Certificate
		if err := json.Unmarshal(raw, &cert); err != nil {
			c.t.Fatal(err)
		}
		return cert, nil
	case http.StatusUnprocessableEntity:
		var r issuer.Refusal
		if err := json.Unmarshal(raw, &r); err != nil {
			c.t.Fatal(err)
		}
		return issuer.Certificate{}, &r
	}
	c.t.Fatalf("apply: status %d: %s", code, raw)
	return issuer.Certificate{}, nil
}

func app(num string) issuer.Application {
	return issuer.Application{Name: "张三", DocType: issuer.DocResidentID, DocNumber: num, City: "北京", FaceCheck: "passed"}
}

func start(t *testing.T) (*issuertest.Server, client, *bytes.Buffer) {
	var logs bytes.Buffer
	s := issuertest.Start(t, issuer.Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	return s, client{t, s.URL}, &logs
}

func TestRefusals(t *testing.T) {
	s, c, _ := start(t)
	good := idNumber(t, "11010519900307123")
	mod := func(f func(*issuer.Application)) issuer.Application { a := app(good); f(&a); return a }
	cases := []struct {
		name, code, says string
		a                issuer.Application
	}{
		{"passport", "document_not_accepted", "cannot be issued for a passport", mod(func(a *issuer.Application) { a.DocType = "passport" })},
		{"HK/Macao permit", "document_not_accepted", "only holders of a Chinese resident identity card", mod(func(a *issuer.Application) { a.DocType = "hk_macao_pass" })},
		{"unknown type", "document_not_accepted", "cannot be issued", mod(func(a *issuer.Application) { a.DocType = "library_card" })},
		{"check character", "check_character", "check", mod(func(a *issuer.Application) {
			last := byte('0')
			if good[17] == '0' {
				last = '1'
			}
			a.DocNumber = good[:17] + string(last)
		})},
		{"short number", "document_number_invalid", "18", mod(func(a *issuer.Application) { a.DocNumber = good[:15] })},
		{"area", "area_code", "area", mod(func(a *issuer.Application) { a.DocNumber = idNumber(t, "99010519900307123") })},
		{"residence permit", "area_code", "residence", mod(func(a *issuer.Application) { a.DocNumber = idNumber(t, "81000019900307123") })},
		{"birth date", "birth_date", "birth", mod(func(a *issuer.Application) { a.DocNumber = idNumber(t, "11010519900230123") })},
		{"born in the future", "birth_date", "birth", mod(func(a *issuer.Application) { a.DocNumber = idNumber(t, "11010520300101123") })},
		{"face check", "face_check_failed", "face check", mod(func(a *issuer.Application) { a.FaceCheck = "failed" })},
		{"no face check", "face_check_missing", "face_check", mod(func(a *issuer.Application) { a.FaceCheck = "" })},
		{"no name", "missing_name", "name", mod(func(a *issuer.Application) { a.Name = "  " })},
		{"no city", "missing_city", "city", mod(func(a *issuer.Application) { a.City = "" })},
	}
	for _, tc := range cases {
		_, r := c.apply(tc.a)
		if r == nil || r.Code != tc.code || !strings.Contains(r.Message, tc.says) {
			t.Errorf("%s: refusal %+v, want code %s saying %q", tc.name, r, tc.code, tc.says)
		}
		if r != nil && strings.Contains(r.Message, tc.a.DocNumber) && tc.a.DocNumber != "" {
			t.Errorf("%s: the message repeats the document number", tc.name)
		}
	}
	// A minor may apply (rule 1).
	if _, r := c.apply(app(idNumber(t, "11010520150307123"))); r != nil {
		t.Errorf("minor refused: %+v", r)
	}
	// Nothing refused reached the feed: one change, the minor's.
	pg, err := s.LogPage(0)
	if err != nil {
		t.Fatal(err)
	}
	if d, err := feed.Open(pg.Data, feedtest.Keyring(t, s.Opts.Signer), feedtest.Fleet(t)); err != nil || d.Next != 1 {
		t.Fatalf("feed after the refusals: %+v %v", d, err)
	}
}

func TestIssueAndToken(t *testing.T) {
	s, c, logs := start(t)
	num := idNumber(t, "11010519900307123")
	cert, r := c.apply(app(num))
	if r != nil {
		t.Fatal(r)
	}
	now := s.Clock.Now()
	if !cert.NotBefore.Equal(now) || cert.NotAfter.Sub(cert.NotBefore) != 24*time.Hour || cert.Status != "valid" {
		t.Fatalf("certificate %+v", cert)
	}
	key, err := verify.ParseKey(cert.Key)
	if err != nil {
		t.Fatal(err)
	}
	// The phone's token is the TR1 token of the certificate's key now.
	resp, err := http.Get(s.URL + "v1/certs/" + cert.ID.String() + "/token")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	want := verify.NewToken(&key, cert.ID, verify.StepOf(now)).String()
	if string(body) != want+"\n" {
		t.Fatalf("token %q, want %q", body, want)
	}
	// …and its QR image says the same.
	resp, err = http.Get(s.URL + "v1/certs/" + cert.ID.String() + "/qr.png?at=" + now.Add(-2*time.Minute).Format(time.RFC3339))
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	text, err := qrcode.Decode(img)
	if old := verify.NewToken(&key, cert.ID, verify.StepOf(now)-2).String(); err != nil || text != old {
		t.Fatalf("QR says %q (%v), want the token of two minutes ago %q", text, err, old)
	}
	// Neither name nor number in the issuer's log.
	if strings.Contains(logs.String(), num) || strings.Contains(logs.String(), "张三") || !strings.Contains(logs.String(), cert.ID.String()) {
		t.Fatalf("issuer log:\n%s", logs)
	}
	// The state survives a restart.
	epoch := s.Epoch()
	s.Restart()
	if _, err := s.Token(cert.ID, now); err != nil || s.Epoch() != epoch {
		t.Fatalf("after restart: %v, epoch %x → %x", err, epoch, s.Epoch())
	}
	// The feed carries the certificate and nothing about its holder.
	pg, err := s.LogPage(0)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(pg.Data, []byte(num)) || bytes.Contains(pg.Data, []byte("张三")) || bytes.Contains(pg.Data, []byte("北京")) {
		t.Fatal("the feed carries the holder's identity")
	}
	d, err := feed.Open(pg.Data, feedtest.Keyring(t, s.Opts.Signer), feedtest.Fleet(t))
	if err != nil || len(d.Upserts) != 1 || d.Upserts[0].Key != key {
		t.Fatalf("feed page: %+v %v", d, err)
	}
}

// Rule 5: three per natural month, counted in UTC+8.
func TestMonthlyLimitInCST(t *testing.T) {
	s, c, _ := start(t)
	num := idNumber(t, "44030519851112001")
	cst := issuer.CST
	for _, day := range []int{2, 10} {
		s.Clock.Set(time.Date(2026, 11, day, 9, 0, 0, 0, cst))
		if _, r := c.apply(app(num)); r != nil {
			t.Fatalf("November %d: %+v", day, r)
		}
	}
	// The 3rd at 23:00 CST on 30 November (15:00 UTC).
	s.Clock.Set(time.Date(2026, 11, 30, 23, 0, 0, 0, cst))
	if _, r := c.apply(app(num)); r != nil {
		t.Fatalf("3rd: %+v", r)
	}
	// 23:59 CST: still November in China: the 4th is refused, to the police window.
	s.Clock.Set(time.Date(2026, 11, 30, 23, 59, 0, 0, cst))
	_, r := c.apply(app(num))
	if r == nil || r.Code != "monthly_limit" || !strings.Contains(r.Message, "police window") {
		t.Fatalf("4th in November: %+v", r)
	}
	// 00:30 CST on 1 December is still 30 November in UTC, but a new
	// month in China: not the monthly limit any more. The 3rd
	// certificate is valid until 23:00 on 1 December, so this is a
	// renewal outside the window.
	s.Clock.Set(time.Date(2026, 12, 1, 0, 30, 0, 0, cst))
	if s.Clock.Now().UTC().Month() != time.November {
		t.Fatal("test premise: still November in UTC")
	}
	if _, r := c.apply(app(num)); r == nil || r.Code != "still_valid" {
		t.Fatalf("1 December 00:30 CST: %+v, want still_valid", r)
	}
}

// Rule 6: a renewal only in the last 3 hours; both then valid.
func TestRenewalWindow(t *testing.T) {
	s, c, _ := start(t)
	num := idNumber(t, "32010219770101541")
	first, r := c.apply(app(num))
	if r != nil {
		t.Fatal(r)
	}
	s.Clock.Set(first.NotAfter.Add(-3*time.Hour - time.Second))
	_, r = c.apply(app(num))
	if r == nil || r.Code != "still_valid" || !strings.Contains(r.Message, "last 3 hours") {
		t.Fatalf("3 h 1 s before expiry: %+v", r)
	}
	s.Clock.Set(first.NotAfter.Add(-3 * time.Hour))
	second, r := c.apply(app(num))
	if r != nil {
		t.Fatalf("exactly 3 h before expiry: %+v", r)
	}
	if !second.NotAfter.After(first.NotAfter) {
		t.Fatal("renewal does not outlast the first")
	}
	var hist struct{ Certificates []issuer.Certificate }
	if code := c.post("v1/history", map[string]string{"doc_number": num}, &hist); code != 200 {
		t.Fatalf("history: %d", code)
	}
	if len(hist.Certificates) != 2 || hist.Certificates[0].ID != second.ID || hist.Certificates[0].Status != "valid" || hist.Certificates[1].Status != "valid" || hist.Certificates[0].Key != "" {
		t.Fatalf("history: %+v", hist.Certificates)
	}
	// A revoked certificate does not block a new application.
	num2 := idNumber(t, "32010219770101542")
	c3, _ := c.apply(app(num2))
	if code := c.post("v1/certs/"+c3.ID.String()+"/revoke", nil, nil); code != 200 {
		t.Fatalf("revoke: %d", code)
	}
	if _, r := c.apply(app(num2)); r != nil {
		t.Fatalf("after revocation: %+v", r)
	}
	// History reaches back one month only.
	s.Clock.Set(first.NotBefore.AddDate(0, 1, 2))
	c.post("v1/history", map[string]string{"doc_number": num}, &hist)
	if len(hist.Certificates) != 0 {
		t.Fatalf("history after a month: %+v", hist.Certificates)
	}
}

func TestRevoke(t *testing.T) {
	s, c, _ := start(t)
	cert, _ := c.apply(app(idNumber(t, "11010519900307123")))
	var unknown verify.CertID
	unknown[0] = 1
	if code := c.post("v1/certs/"+unknown.String()+"/revoke", nil, nil); code != http.StatusNotFound {
		t.Fatalf("unknown cert: %d", code)
	}
	for range 2 { // twice: one revocation in the feed
		if err := s.Revoke(cert.ID); err != nil {
			t.Fatal(err)
		}
	}
	pg, _ := s.LogPage(0)
	d, err := feed.Open(pg.Data, feedtest.Keyring(t, s.Opts.Signer), feedtest.Fleet(t))
	if err != nil || len(d.Revokes) != 1 || d.Revokes[0] != cert.ID || d.Next != 2 {
		t.Fatalf("log after revocation: %+v %v", d, err)
	}
	if err := s.Revoke(unknown); !errors.Is(err, issuer.ErrUnknownCert) {
		t.Fatalf("%v", err)
	}
}

func TestHostileRequests(t *testing.T) {
	_, c, _ := start(t)
	for _, tc := range []struct {
		path, body string
		code       int
	}{
		{"v1/applications", `{"name":"x"`, 400},
		{"v1/applications", `{"nmae":"x"}`, 400},
		{"v1/applications", `{"name":"` + strings.Repeat("a", 20<<10) + `"}`, 413},
		{"v1/events", `{"gate_id":"g 1","events":[]}`, 422},
		{"v1/events", `{"gate_id":"g1","events":[{"seq":2},{"seq":1}]}`, 422},
		{"v1/history", `{"doc_number":"123"}`, 422},
	} {
		resp, err := http.Post(c.url+tc.path, "application/json", strings.NewReader(tc.body))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.code || !bytes.Contains(b, []byte(`"message"`)) {
			t.Errorf("%s %.40q: %d %s, want %d with a message", tc.path, tc.body, resp.StatusCode, b, tc.code)
		}
	}
	for _, p := range []string{"v1/feed/head?nonce=zz", "v1/feed/log/x", "v1/feed/log/99", "v1/feed/snapshot/0/xyz", "v1/certs/00/token"} {
		resp, err := http.Get(c.url + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode < 400 || resp.StatusCode >= 500 {
			t.Errorf("GET %s: %d, want a 4xx", p, resp.StatusCode)
		}
	}
}

func TestFeedCacheHeaders(t *testing.T) {
	s := issuertest.Start(t, issuer.Options{PageSize: 2})
	c := client{t, s.URL}
	for i := range 3 {
		if _, r := c.apply(app(idNumber(t, "1101051990030712"+string(rune('0'+i))))); r != nil {
			t.Fatal(r)
		}
	}
	for _, tc := range []struct{ path, cc string }{
		{"v1/feed/log/0", "public, max-age=31536000, immutable"},
		{"v1/feed/log/1", "public, no-cache"},
		{"v1/feed/snapshot/2/00000000000000000000000000000000", "public, max-age=31536000, immutable"},
		{"v1/feed/head?nonce=00112233445566778899aabbccddeeff", "no-store"},
	} {
		resp, err := http.Get(s.URL + tc.path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got := resp.Header.Get("Cache-Control"); got != tc.cc || resp.StatusCode != 200 {
			t.Errorf("%s: %d Cache-Control %q, want %q", tc.path, resp.StatusCode, got, tc.cc)
		}
		if et := resp.Header.Get("ETag"); tc.cc != "no-store" {
			req, _ := http.NewRequest("GET", s.URL+tc.path, nil)
			req.Header.Set("If-None-Match", et)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusNotModified {
				t.Errorf("%s revalidated: %d, want 304", tc.path, resp.StatusCode)
			}
		}
	}
}

// A certificate and its holder stay for the month of history, then go.
func TestPruneAfterHistory(t *testing.T) {
	s, c, _ := start(t)
	num := idNumber(t, "11010519900307123")
	old, _ := c.apply(app(num))
	s.Clock.Advance(issuer.HistoryRetention + 25*time.Hour)
	recent, r := c.apply(app(num))
	if r != nil {
		t.Fatal(r)
	}
	if _, err := s.Prune(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Token(old.ID, s.Clock.Now()); !errors.Is(err, issuer.ErrUnknownCert) {
		t.Fatalf("certificate past its history: %v, want gone", err)
	}
	if _, err := s.Token(recent.ID, s.Clock.Now()); err != nil {
		t.Fatalf("recent certificate: %v", err)
	}
	hist, err := s.History(num)
	if err != nil || len(hist) != 1 || hist[0].ID != recent.ID {
		t.Fatalf("history after prune: %+v %v", hist, err)
	}
}

func TestOptionsRefused(t *testing.T) {
	dir := t.TempDir()
	signer := feedtest.Signer(t, "k", 1)
	fleet := feedtest.Publics(feedtest.FleetKey(t, 1))
	five := feedtest.Publics(feedtest.FleetKey(t, 1), feedtest.FleetKey(t, 2), feedtest.FleetKey(t, 3), feedtest.FleetKey(t, 4), feedtest.FleetKey(t, 5))
	for _, o := range []issuer.Options{
		{Signer: signer, Fleet: fleet, MaxAge: time.Second},
		{Signer: signer, Fleet: fleet, MaxAge: 8 * 24 * time.Hour},
		{Signer: signer, Fleet: fleet, PageSize: feed.MaxRecords + 1},
		{Signer: signer},                                 // no fleet key: the keys could not be sealed
		{Signer: signer, Fleet: five},                    // more than a page holds
		{Signer: signer, Fleet: append(fleet, fleet...)}, // one key twice
		{},
	} {
		if is, err := issuer.Open(filepath.Join(dir, "issuer.db"), o); err == nil {
			is.Close()
			t.Errorf("Open accepted %+v", o)
		}
	}
}
