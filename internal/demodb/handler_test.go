package demodb_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/demodb"
)

var (
	discard = slog.New(slog.DiscardHandler)
	quiet   = demodb.Options{Logger: discard}
)

// fakeStore answers from its fields and records the calls.
type fakeStore struct {
	mu       sync.Mutex
	writeErr error
	readyErr error
	block    bool // Write and Ready wait for their ctx to end
	writes   []int64
	readies  int
}

func (f *fakeStore) Write(ctx context.Context, id int64) error {
	f.mu.Lock()
	f.writes = append(f.writes, id)
	block, err := f.block, f.writeErr
	f.mu.Unlock()
	if block {
		<-ctx.Done()
		return ctx.Err()
	}
	return err
}

func (f *fakeStore) Ready(ctx context.Context) error {
	f.mu.Lock()
	f.readies++
	block, err := f.block, f.readyErr
	f.mu.Unlock()
	if block {
		<-ctx.Done()
		return ctx.Err()
	}
	return err
}

func (f *fakeStore) calls() (writes []int64, readies int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]int64(nil), f.writes...), f.readies
}

func serve(t *testing.T, h http.Handler, method, target string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, target, nil))
	return rec.Code, rec.Body.String()
}

func TestWrite(t *testing.T) {
	tests := []struct {
		name     string
		store    *fakeStore
		method   string
		target   string
		wantCode int
		wantBody string
		wantIDs  []int64
	}{
		{"committed", &fakeStore{}, "POST", "/write?id=42", 200, "committed 42\n", []int64{42}},
		{"negative id is an id", &fakeStore{}, "POST", "/write?id=-7", 200, "committed -7\n", []int64{-7}},
		{"store fails: 503 with the reason", &fakeStore{writeErr: errors.New("connection refused")}, "POST", "/write?id=1",
			503, "write 1: connection refused\n", []int64{1}},
		{"missing id", &fakeStore{}, "POST", "/write", 400, "id: want an integer, got \"\"\n", nil},
		{"malformed id", &fakeStore{}, "POST", "/write?id=x1", 400, "id: want an integer, got \"x1\"\n", nil},
		{"GET is not a write", &fakeStore{}, "GET", "/write?id=1", 405, "method GET not allowed\n", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := demodb.New(tt.store, quiet)
			code, body := serve(t, h, tt.method, tt.target)
			if code != tt.wantCode || body != tt.wantBody {
				t.Fatalf("%s %s = %d %q, want %d %q", tt.method, tt.target, code, body, tt.wantCode, tt.wantBody)
			}
			if ids, _ := tt.store.calls(); !slices.Equal(ids, tt.wantIDs) {
				t.Fatalf("store writes %v, want %v", ids, tt.wantIDs)
			}
		})
	}
}

// A database that does not answer must cost the client WriteTimeout, not
// the pool's connect timeout or the kernel's: the write answers 503.
func TestWriteTimesOutWith503(t *testing.T) {
	h := demodb.New(&fakeStore{block: true}, demodb.Options{WriteTimeout: 50 * time.Millisecond, Logger: discard})
	start := time.Now()
	code, body := serve(t, h, "POST", "/write?id=3")
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("write took %v with a 50ms write timeout", took)
	}
	if code != 503 || !strings.Contains(body, "deadline exceeded") {
		t.Fatalf("POST /write against a hung store = %d %q, want 503 naming the deadline", code, body)
	}
}

func TestLivenessNeverTouchesTheDatabase(t *testing.T) {
	st := &fakeStore{writeErr: errors.New("down"), readyErr: errors.New("down"), block: true}
	h := demodb.New(st, quiet)
	for _, m := range []string{"GET", "HEAD"} {
		if code, _ := serve(t, h, m, "/healthz/live"); code != 200 {
			t.Fatalf("%s /healthz/live with the database down = %d, want 200", m, code)
		}
	}
	if w, r := st.calls(); len(w) != 0 || r != 0 {
		t.Fatalf("liveness called the store: %d writes, %d readiness checks", len(w), r)
	}
	if code, _ := serve(t, h, "POST", "/healthz/live"); code != 405 {
		t.Fatalf("POST /healthz/live = %d, want 405", code)
	}
}

func TestReadiness(t *testing.T) {
	tests := []struct {
		name     string
		store    *fakeStore
		wantCode int
		wantBody string
	}{
		{"writable primary", &fakeStore{}, 200, "ready\n"},
		{"replica", &fakeStore{readyErr: demodb.ErrReadOnly}, 503, "not ready: demodb: server is read-only\n"},
		{"unreachable", &fakeStore{readyErr: errors.New("dial tcp 127.0.0.1:6432: connection refused")}, 503,
			"not ready: dial tcp 127.0.0.1:6432: connection refused\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := demodb.New(tt.store, quiet)
			if code, body := serve(t, h, "GET", "/healthz/ready"); code != tt.wantCode || body != tt.wantBody {
				t.Fatalf("GET /healthz/ready = %d %q, want %d %q", code, body, tt.wantCode, tt.wantBody)
			}
		})
	}
}

func TestReadinessIsBounded(t *testing.T) {
	h := demodb.New(&fakeStore{block: true}, demodb.Options{ReadyTimeout: 50 * time.Millisecond, Logger: discard})
	start := time.Now()
	code, _ := serve(t, h, "GET", "/healthz/ready")
	if took := time.Since(start); code != 503 || took > 2*time.Second {
		t.Fatalf("readiness against a hung store = %d after %v, want 503 after about 50ms", code, took)
	}
}

func TestUnknownPath(t *testing.T) {
	if code, _ := serve(t, demodb.New(&fakeStore{}, quiet), "GET", "/nope"); code != 404 {
		t.Fatalf("GET /nope = %d, want 404", code)
	}
}

// Serve answers on a loopback listener and returns nil once ctx ends.
func TestServeStopsWithContext(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- demodb.Serve(ctx, ln, demodb.New(&fakeStore{}, quiet), discard) }()
	resp, err := http.Post("http://"+ln.Addr().String()+"/write?id=5", "text/plain", nil)
	if err != nil {
		cancel()
		<-done
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != "committed 5\n" {
		t.Errorf("POST /write?id=5 = %d %q", resp.StatusCode, b)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve after cancel: %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve still running 10s after cancel")
	}
}
