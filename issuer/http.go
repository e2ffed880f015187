package issuer

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"gateagent/feed"
	"gateagent/qrcode"
	"gateagent/verify"
)

// ContentType of feed documents.
const ContentType = "application/vnd.gateagent.feed"

// Handler returns the issuer's HTTP API:
//
//	GET  /v1/feed/head?nonce=HEX      signed head, never cached
//	GET  /v1/feed/log/{page}          log page; immutable once full
//	GET  /v1/feed/snapshot/{s}/{after} snapshot page; immutable
//	POST /v1/events                   gates' event uploads
//	GET  /v1/events?gate=ID[&after=SEQ][&limit=N]  a gate's stored events, oldest first
//	POST /v1/applications             apply for a certificate
//	POST /v1/history                  a document number's last month
//	POST /v1/certs/{id}/revoke        revoke
//	GET  /v1/certs/{id}/token[?at=RFC3339]  the phone's current TR1 token
//	GET  /v1/certs/{id}/qr.png[?at=RFC3339] the same as a QR image
//	GET  /healthz
//
// Document numbers travel in request bodies, never in URLs, so that access
// logs and proxies never see them.
func (is *Issuer) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/feed/head", is.serveHead)
	mux.HandleFunc("GET /v1/feed/log/{page}", is.serveLog)
	mux.HandleFunc("GET /v1/feed/snapshot/{snap}/{after}", is.serveSnapshot)
	mux.HandleFunc("POST /v1/events", is.serveEvents)
	mux.HandleFunc("GET /v1/events", is.serveListEvents)
	mux.HandleFunc("POST /v1/applications", is.serveApply)
	mux.HandleFunc("POST /v1/history", is.serveHistory)
	mux.HandleFunc("POST /v1/certs/{id}/revoke", is.serveRevoke)
	mux.HandleFunc("GET /v1/certs/{id}/token", is.serveToken)
	mux.HandleFunc("GET /v1/certs/{id}/qr.png", is.serveQR)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") })
	return mux
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func writeErr(w http.ResponseWriter, code int, name, format string, a ...any) {
	writeJSON(w, code, &Refusal{Code: name, Message: fmt.Sprintf(format, a...)})
}

// readJSON decodes a bounded, strict JSON body.
func readJSON(w http.ResponseWriter, r *http.Request, limit int64, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, limit))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeErr(w, http.StatusRequestEntityTooLarge, "too_large", "request body over %d bytes", limit)
		} else {
			writeErr(w, http.StatusBadRequest, "bad_json", "request body is not the expected JSON: %v", err)
		}
		return false
	}
	return true
}

func (is *Issuer) serveFeedErr(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, ErrGone):
		writeErr(w, http.StatusGone, "gone", "%v", ErrGone)
	case errors.Is(err, ErrNotYet):
		writeErr(w, http.StatusNotFound, "not_yet", "%v", ErrNotYet)
	default:
		is.opt.Logger.Error("feed", "err", err)
		writeErr(w, http.StatusInternalServerError, "internal", "the issuer could not build the page: see its log")
	}
}

func (is *Issuer) serveHead(w http.ResponseWriter, r *http.Request) {
	var nonce [feed.NonceLen]byte
	if n, err := hex.Decode(nonce[:], []byte(r.URL.Query().Get("nonce"))); err != nil || n != feed.NonceLen {
		writeErr(w, http.StatusBadRequest, "bad_nonce", "nonce must be %d bytes in hex", feed.NonceLen)
		return
	}
	data, err := is.Head(nonce)
	if err != nil {
		is.serveFeedErr(w, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Type", ContentType)
	w.Write(data)
}

func (is *Issuer) servePage(w http.ResponseWriter, r *http.Request, pg Page, err error) {
	if err != nil {
		is.serveFeedErr(w, err)
		return
	}
	h := w.Header()
	h.Set("ETag", pg.ETag)
	h.Set("Content-Type", ContentType)
	if pg.Immutable {
		h.Set("Cache-Control", "public, max-age=31536000, immutable")
	} else {
		// The last log page grows: caches keep it but ask each time.
		h.Set("Cache-Control", "public, no-cache")
	}
	if inm := r.Header.Get("If-None-Match"); inm != "" && inm == pg.ETag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	h.Set("Content-Length", strconv.Itoa(len(pg.Data)))
	w.Write(pg.Data)
}

func (is *Issuer) serveLog(w http.ResponseWriter, r *http.Request) {
	p, err := strconv.ParseUint(r.PathValue("page"), 10, 64)
	if err != nil {
		writeErr(w, http.StatusBadRequest, "bad_page", "page must be a decimal number")
		return
	}
	pg, err := is.LogPage(p)
	is.servePage(w, r, pg, err)
}

func (is *Issuer) serveSnapshot(w http.ResponseWriter, r *http.Request) {
	s, err := strconv.ParseUint(r.PathValue("snap"), 10, 64)
	if err != nil {
		writeErr(w, http.StatusBadRequest, "bad_snapshot", "snapshot must be a decimal number")
		return
	}
	after, err := verify.ParseCertID(r.PathValue("after"))
	if err != nil {
		writeErr(w, http.StatusBadRequest, "bad_after", "after must be a certificate ID in hex")
		return
	}
	pg, err := is.SnapshotPage(s, after)
	is.servePage(w, r, pg, err)
}

func (is *Issuer) serveApply(w http.ResponseWriter, r *http.Request) {
	var a Application
	if !readJSON(w, r, 16<<10, &a) {
		return
	}
	c, err := is.Apply(a)
	var ref *Refusal
	switch {
	case errors.As(err, &ref):
		writeJSON(w, http.StatusUnprocessableEntity, ref)
	case err != nil:
		is.opt.Logger.Error("apply", "err", err)
		writeErr(w, http.StatusInternalServerError, "internal", "the issuer failed: see its log")
	default:
		writeJSON(w, http.StatusCreated, c)
	}
}

func (is *Issuer) serveHistory(w http.ResponseWriter, r *http.Request) {
	var q struct {
		DocNumber string `json:"doc_number"`
	}
	if !readJSON(w, r, 4<<10, &q) {
		return
	}
	cs, err := is.History(q.DocNumber)
	var ref *Refusal
	switch {
	case errors.As(err, &ref):
		writeJSON(w, http.StatusUnprocessableEntity, ref)
	case err != nil:
		is.opt.Logger.Error("history", "err", err)
		writeErr(w, http.StatusInternalServerError, "internal", "the issuer failed: see its log")
	default:
		writeJSON(w, http.StatusOK, map[string]any{"certificates": cs})
	}
}

func certIDOf(w http.ResponseWriter, r *http.Request) (verify.CertID, bool) {
	id, err := verify.ParseCertID(r.PathValue("id"))
	if err != nil {
		writeErr(w, http.StatusBadRequest, "bad_cert_id", "certificate ID must be 32 hex digits")
		return id, false
	}
	return id, true
}

func (is *Issuer) serveRevoke(w http.ResponseWriter, r *http.Request) {
	id, ok := certIDOf(w, r)
	if !ok {
		return
	}
	switch err := is.Revoke(id); {
	case errors.Is(err, ErrUnknownCert):
		writeErr(w, http.StatusNotFound, "unknown_cert", "%v", ErrUnknownCert)
	case err != nil:
		is.opt.Logger.Error("revoke", "err", err)
		writeErr(w, http.StatusInternalServerError, "internal", "the issuer failed: see its log")
	default:
		writeJSON(w, http.StatusOK, map[string]any{"cert_id": id, "status": "revoked"})
	}
}

// tokenAt returns the token the phone shows at ?at= (default: now).
func (is *Issuer) tokenAt(w http.ResponseWriter, r *http.Request) (string, bool) {
	id, ok := certIDOf(w, r)
	if !ok {
		return "", false
	}
	at := is.opt.Now()
	if s := r.URL.Query().Get("at"); s != "" {
		t, err := time.Parse(time.RFC3339, s)
		if err != nil {
			writeErr(w, http.StatusBadRequest, "bad_time", "at must be an RFC 3339 time")
			return "", false
		}
		at = t
	}
	tok, err := is.Token(id, at)
	switch {
	case errors.Is(err, ErrUnknownCert):
		writeErr(w, http.StatusNotFound, "unknown_cert", "%v", ErrUnknownCert)
		return "", false
	case err != nil:
		is.opt.Logger.Error("token", "err", err)
		writeErr(w, http.StatusInternalServerError, "internal", "the issuer failed: see its log")
		return "", false
	}
	return tok.String(), true
}

func (is *Issuer) serveToken(w http.ResponseWriter, r *http.Request) {
	tok, ok := is.tokenAt(w, r)
	if !ok {
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	io.WriteString(w, tok+"\n")
}

func (is *Issuer) serveQR(w http.ResponseWriter, r *http.Request) {
	tok, ok := is.tokenAt(w, r)
	if !ok {
		return
	}
	m, err := qrcode.Encode(tok)
	if err != nil {
		writeErr(w, http.StatusInternalServerError, "internal", "QR encoding failed: %v", err)
		return
	}
	w.Header().Set("Content-Type", "image/png")
	w.Header().Set("Cache-Control", "no-store")
	m.PNG(w, 8)
}
