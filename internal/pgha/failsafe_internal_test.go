package pgha

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/clock"
)

// TestFailsafeMAC: a question or an answer counts only with the MAC of its
// exact body under the failsafe key.
func TestFailsafeMAC(t *testing.T) {
	key, other := strings.Repeat("ab", 32), strings.Repeat("cd", 32)
	body := []byte(`{"cluster":"pg","leader":"a","rev":10,"seq":7}`)
	mac, err := failsafeMAC(key, body)
	if err != nil {
		t.Fatal(err)
	}
	if !failsafeVerify(key, body, mac) || !failsafeVerify(key, body, strings.ToUpper(mac)) {
		t.Fatal("the right MAC is refused")
	}
	for name, c := range map[string]struct {
		key  string
		body string
		mac  string
	}{
		"another key":      {other, string(body), mac},
		"a tampered body":  {key, strings.Replace(string(body), `"seq":7`, `"seq":8`, 1), mac},
		"no MAC":           {key, string(body), ""},
		"a truncated MAC":  {key, string(body), mac[:32]},
		"a key too short":  {"abcd", string(body), mac},
		"a key not in hex": {strings.Repeat("zz", 32), string(body), mac},
	} {
		if failsafeVerify(c.key, []byte(c.body), c.mac) {
			t.Errorf("%s: accepted", name)
		}
	}
	if k1, k2 := newFailsafeKey(), newFailsafeKey(); len(k1) != 64 || k1 == k2 {
		t.Fatalf("keys %q %q: want 256 random bits each", k1, k2)
	}
}

// TestServeFailsafe: POST /failsafe on a replica's REST port, through the
// handler: garbage and unsigned questions are refused without a promise; a
// signed one from the leader it sees is accepted, signed, and makes the
// promise; the same question replayed is refused.
func TestServeFailsafe(t *testing.T) {
	key := strings.Repeat("ab", 32)
	v := View{Rev: 5, Leader: &LeaderInfo{Member: "a", Rev: 10, State: LeaderPrimary},
		FailsafeKey: &FailsafeInfo{Leader: "a", Rev: 10, Key: key, Members: map[string]string{"a": "", "b": ""}}}
	a := &Agent{o: Options{Cluster: "pg", Member: "b"}, clock: clock.Or(nil), log: slog.New(slog.DiscardHandler),
		pol: Policy{TTL: 4 * time.Second, LoopWait: 500 * time.Millisecond, RetryTimeout: 500 * time.Millisecond}, view: v}
	h := a.RESTHandler()
	post := func(body, mac string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodPost, "/failsafe", strings.NewReader(body))
		if mac != "" {
			r.Header.Set(FailsafeMACHeader, mac)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	if w := post("{not json", ""); w.Code != http.StatusBadRequest {
		t.Fatalf("garbage: %d %s", w.Code, w.Body)
	}
	if w := post(strings.Repeat("x", failsafeMaxBody+1), ""); w.Code != http.StatusBadRequest {
		t.Fatalf("oversized: %d", w.Code)
	}
	body := mustJSON(FailsafeRequest{Cluster: "pg", Leader: "a", Rev: 10, Seq: 7})
	if w := post(body, ""); w.Code != http.StatusForbidden {
		t.Fatalf("unsigned: %d %s", w.Code, w.Body)
	}
	if w := post(body, strings.Repeat("0", 64)); w.Code != http.StatusForbidden {
		t.Fatalf("badly signed: %d %s", w.Code, w.Body)
	}
	if !a.fs.promUntil.IsZero() {
		t.Fatal("a refused question made a promise")
	}
	mac, _ := failsafeMAC(key, []byte(body))
	w := post(body, mac)
	if w.Code != http.StatusOK || !failsafeVerify(key, w.Body.Bytes(), w.Header().Get(FailsafeMACHeader)) {
		t.Fatalf("signed: %d %s (answer MAC ok: %v)", w.Code, w.Body, failsafeVerify(key, w.Body.Bytes(), w.Header().Get(FailsafeMACHeader)))
	}
	var ans FailsafeAnswer
	if err := json.Unmarshal(w.Body.Bytes(), &ans); err != nil || !ans.Accepted || ans.Member != "b" || ans.Seq != 7 || ans.PromiseMS != 4000 {
		t.Fatalf("answer %+v (%v)", ans, err)
	}
	if a.fs.promLeader != "a" || a.fs.promRev != 10 || a.fs.promUntil.IsZero() {
		t.Fatalf("no promise recorded: %+v", a.fs)
	}
	w = post(body, mac)
	if err := json.Unmarshal(w.Body.Bytes(), &ans); err != nil || ans.Accepted || !strings.Contains(ans.Reason, "not newer") {
		t.Fatalf("replayed: %+v (%v)", ans, err)
	}
}
