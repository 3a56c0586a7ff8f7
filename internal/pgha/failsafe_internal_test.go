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

// TestServeRelease: POST /failsafe/release through the handler: an
// unsigned question, or one about another leadership, is refused; a signed
// one gets a signed answer, released only once the member saw the leader
// key gone and its promise ended.
func TestServeRelease(t *testing.T) {
	key := strings.Repeat("ab", 32)
	fi := &FailsafeInfo{Leader: "a", Rev: 10, Key: key, Members: map[string]string{"a": "", "b": ""}}
	now := time.Now()
	v := View{Rev: 5, Leader: &LeaderInfo{Member: "a", Rev: 10, State: LeaderPrimary}, FailsafeKey: fi}
	a := &Agent{o: Options{Cluster: "pg", Member: "b"}, clock: clock.Or(nil), log: slog.New(slog.DiscardHandler),
		pol:  Policy{TTL: 4 * time.Second, LoopWait: 500 * time.Millisecond, RetryTimeout: 500 * time.Millisecond},
		view: v, snapshot: v, started: now.Add(-time.Minute)}
	h := a.RESTHandler()
	ask := func(q ReleaseQuery, sign bool) (int, ReleaseAnswer) {
		body := mustJSON(q)
		r := httptest.NewRequest(http.MethodPost, "/failsafe/release", strings.NewReader(body))
		if sign {
			mac, _ := failsafeMAC(key, []byte(body))
			r.Header.Set(FailsafeMACHeader, mac)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		var ans ReleaseAnswer
		if w.Code == http.StatusOK {
			if !failsafeVerify(key, w.Body.Bytes(), w.Header().Get(FailsafeMACHeader)) {
				t.Fatalf("the answer is not signed: %s", w.Body)
			}
			json.Unmarshal(w.Body.Bytes(), &ans)
		}
		return w.Code, ans
	}
	q := ReleaseQuery{Cluster: "pg", Leader: "a", Rev: 10, From: "c"}
	if code, _ := ask(q, false); code != http.StatusForbidden {
		t.Fatalf("unsigned: %d", code)
	}
	if code, _ := ask(ReleaseQuery{Cluster: "pg", Leader: "a", Rev: 9, From: "c"}, true); code != http.StatusForbidden {
		t.Fatalf("another token: %d", code)
	}
	if code, ans := ask(q, true); code != http.StatusOK || ans.Released || !strings.Contains(ans.Reason, "still sees a") {
		t.Fatalf("leader key still seen: %d %+v", code, ans)
	}
	a.mu.Lock()
	a.view.Leader, a.snapshot.Leader = nil, nil
	a.fs.promLeader, a.fs.promRev, a.fs.promUntil = "a", 10, now.Add(time.Hour)
	a.mu.Unlock()
	if code, ans := ask(q, true); code != http.StatusOK || ans.Released || !strings.Contains(ans.Reason, "promised") {
		t.Fatalf("promise running: %d %+v", code, ans)
	}
	a.mu.Lock()
	a.fs.promUntil = now.Add(-time.Second)
	a.mu.Unlock()
	if code, ans := ask(q, true); code != http.StatusOK || !ans.Released || ans.Member != "b" {
		t.Fatalf("done with a: %d %+v", code, ans)
	}
}
