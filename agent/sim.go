package agent

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"gateagent/control"
)

// MaxSimPassage bounds how long a simulated passenger stays in the passage.
const MaxSimPassage = time.Minute

// simHandler lets a bench without a turnstile drive the simulated board's
// inputs through the control socket (gateagent sim), so that a passenger
// can be walked through in run mode:
//
//	POST /sim/passage?for=D           someone enters the passage and leaves it D later (default 500ms)
//	POST /sim/passage?state=on|off    the passage sensor held on, or released
//	POST /sim/emergency?state=on|off  the emergency input engaged or released
//	GET  /sim/                        the simulated board's outputs and inputs
//
// On a gate with real hardware (hw.kind = "gpio") every request is
// refused: nothing but the sensors may say someone passed.
func (a *Agent) simHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /sim/", func(w http.ResponseWriter, r *http.Request) {
		if !a.simulated(w) {
			return
		}
		state := map[string]bool{}
		for _, n := range []string{"relay", "green", "red", "buzzer"} {
			state[n] = a.sim.Output(n)
		}
		for _, n := range []string{"passage", "emergency"} {
			state[n], _ = a.sim.Input(n).Active()
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(state)
	})
	mux.HandleFunc("POST /sim/passage", func(w http.ResponseWriter, r *http.Request) {
		if !a.simulated(w) {
			return
		}
		q := r.URL.Query()
		if st := q.Get("state"); st != "" {
			a.simSet(w, r, "passage", st)
			return
		}
		d := 500 * time.Millisecond
		if s := q.Get("for"); s != "" {
			var err error
			if d, err = time.ParseDuration(s); err != nil || d <= 0 || d > MaxSimPassage {
				http.Error(w, fmt.Sprintf("for=%q: give a duration up to %v", s, MaxSimPassage), http.StatusBadRequest)
				return
			}
		}
		a.log.Info("simulated passage", "for", d, "peer", control.PeerOf(r).String())
		in := a.sim.Input("passage")
		in.Set(true)
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-r.Context().Done():
		}
		in.Set(false)
		fmt.Fprintf(w, "passage: someone entered and left %v later\n", d)
	})
	mux.HandleFunc("POST /sim/emergency", func(w http.ResponseWriter, r *http.Request) {
		if a.simulated(w) {
			a.simSet(w, r, "emergency", r.URL.Query().Get("state"))
		}
	})
	return mux
}

// simulated refuses the request unless the board is simulated.
func (a *Agent) simulated(w http.ResponseWriter) bool {
	if a.sim == nil {
		http.Error(w, "the gate's board is not simulated (hw.kind is not \"sim\"): its inputs come from its sensors only", http.StatusConflict)
		return false
	}
	return true
}

// simSet sets a simulated input on or off.
func (a *Agent) simSet(w http.ResponseWriter, r *http.Request, name, state string) {
	var on bool
	switch state {
	case "on":
		on = true
	case "off":
	default:
		http.Error(w, fmt.Sprintf("state=%q: use on or off", state), http.StatusBadRequest)
		return
	}
	a.log.Info("simulated input", "input", name, "state", state, "peer", control.PeerOf(r).String())
	a.sim.Input(name).Set(on)
	fmt.Fprintf(w, "%s: %s\n", name, state)
}
