package diag

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"gateagent/control"
	"gateagent/gate"
	"gateagent/metrics"
)

// agentBackend asks the running agent over its control socket (see
// Live.Handler for what it answers).
type agentBackend struct {
	c *control.Client
}

func (a agentBackend) mode() string { return "daemon" }

func (a agentBackend) report(ctx context.Context, deep bool) (*Report, error) {
	path := "/diag"
	if deep {
		path += query("deep", "1")
	}
	r := new(Report)
	return r, a.call(ctx, http.MethodGet, path, nil, r)
}

func (a agentBackend) clock(ctx context.Context) (Check, error) {
	var c Check
	return c, a.call(ctx, http.MethodGet, "/diag/clock", nil, &c)
}

func (a agentBackend) scan(ctx context.Context, timeout time.Duration) (TokenReport, error) {
	var r TokenReport
	return r, a.call(ctx, http.MethodPost, "/diag/scan"+query("timeout", timeout.String()), nil, &r)
}

func (a agentBackend) token(ctx context.Context, text []byte, source string) (TokenReport, error) {
	var r TokenReport
	return r, a.call(ctx, http.MethodPost, "/diag/token"+query("source", source), strings.NewReader(string(text)), &r)
}

func (a agentBackend) test(ctx context.Context, kind gate.TestKind, pulse time.Duration) (gate.TestResult, error) {
	path := "/diag/indicators"
	if kind == gate.TestRelay {
		path = "/diag/relay" + query("pulse", pulse.String())
	}
	var res gate.TestResult
	return res, a.call(ctx, http.MethodPost, path, nil, &res)
}

func (a agentBackend) sensors(ctx context.Context, d time.Duration, emit func(Reading) error) error {
	resp, err := a.do(ctx, http.MethodGet, "/diag/sensors"+query("seconds", fmt.Sprint(int(d/time.Second))), nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		var r Reading
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			return fmt.Errorf("reading the agent's answer: %w", err)
		}
		if err := emit(r); err != nil {
			return err
		}
	}
	return sc.Err()
}

func (a agentBackend) latency(ctx context.Context) ([]metrics.StageLatency, error) {
	var lat []metrics.StageLatency
	return lat, a.call(ctx, http.MethodGet, "/diag/latency", nil, &lat)
}

func (a agentBackend) wear(ctx context.Context) (Check, error) {
	var c Check
	return c, a.call(ctx, http.MethodGet, "/diag/wear", nil, &c)
}

// do sends a request; an answer other than 200 is an *agentError carrying
// the agent's message.
func (a agentBackend) do(ctx context.Context, method, path string, body io.Reader) (*http.Response, error) {
	resp, err := a.c.Do(ctx, method, path, body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return nil, &agentError{status: resp.StatusCode, msg: strings.TrimSpace(string(msg))}
	}
	return resp, nil
}

// call is do with the JSON answer decoded into v.
func (a agentBackend) call(ctx context.Context, method, path string, body io.Reader, v any) error {
	resp, err := a.do(ctx, method, path, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("reading the agent's answer: %w", err)
	}
	return nil
}

// agentError is the running agent's refusal.
type agentError struct {
	status int
	msg    string
}

func (e *agentError) Error() string { return "the agent says: " + e.msg }

func query(kv ...string) string {
	v := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		v.Set(kv[i], kv[i+1])
	}
	return "?" + v.Encode()
}
