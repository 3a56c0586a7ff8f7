package auth

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"
)

// A signed request carries, instead of its key,
//
//	X-Medic-Signature: <key name>:<unix seconds>:<hex HMAC-SHA256>
//
// the HMAC being keyed with the SHA-256 of the client's key (the digest the
// keys file holds, as 32 bytes) over SignatureMessage: the method, the
// request target (path and query, as sent) and the same unix seconds, each
// on its own line. The key itself never travels; a captured signature is good
// for that method and target only, and only within the proxy's window of its
// time.

// MaxSignatureLen bounds a presented signature header: a longer one is
// refused without being parsed.
const MaxSignatureLen = 256

// Errors of a presented signature. They say what is wrong with it but never
// whether a key name exists.
var (
	ErrSignatureMalformed = errors.New("malformed signature: want <key name>:<unix seconds>:<64 hex digits>")
	ErrSignatureStale     = errors.New("signature time outside the window of the proxy's clock")
	ErrSignatureInvalid   = errors.New("signature does not verify")
)

// Signature is a parsed signature header.
type Signature struct {
	Name string
	Unix int64
	MAC  [sha256.Size]byte
}

// ParseSignature parses a signature header strictly.
func ParseSignature(h []byte) (Signature, error) {
	var s Signature
	if len(h) == 0 || len(h) > MaxSignatureLen {
		return s, ErrSignatureMalformed
	}
	name, rest, ok := bytes.Cut(h, []byte(":"))
	if !ok {
		return s, ErrSignatureMalformed
	}
	ts, mac, ok := bytes.Cut(rest, []byte(":"))
	if !ok || !validName.Match(name) || len(ts) == 0 || len(ts) > 12 || len(mac) != 2*sha256.Size {
		return s, ErrSignatureMalformed
	}
	for _, c := range ts {
		if c < '0' || c > '9' {
			return s, ErrSignatureMalformed
		}
	}
	u, err := strconv.ParseInt(string(ts), 10, 64)
	if err != nil {
		return s, ErrSignatureMalformed
	}
	if _, err := hex.Decode(s.MAC[:], mac); err != nil {
		return s, ErrSignatureMalformed
	}
	s.Name, s.Unix = string(name), u
	return s, nil
}

// SignatureMessage is what a signature covers.
func SignatureMessage(method, target []byte, unix int64) []byte {
	m := make([]byte, 0, len(method)+len(target)+24)
	m = append(m, method...)
	m = append(m, '\n')
	m = append(m, target...)
	m = append(m, '\n')
	return strconv.AppendInt(m, unix, 10)
}

// Sign returns the signature header value for a request of method to
// target (path and query) at t, signed with key named name: what a client
// computes (docs/dependencies.md shows it in a few languages).
func Sign(name, key, method, target string, t time.Time) string {
	d := sha256.Sum256([]byte(key))
	mac := hmac.New(sha256.New, d[:])
	mac.Write(SignatureMessage([]byte(method), []byte(target), t.Unix()))
	return name + ":" + strconv.FormatInt(t.Unix(), 10) + ":" + hex.EncodeToString(mac.Sum(nil))
}

// VerifySigned checks a signature of a request of method to target at now:
// its time must be within window of now (either way), its key name in the
// file, and its HMAC right (compared in constant time).
func (k *ClientKeys) VerifySigned(s Signature, method, target []byte, now time.Time, window time.Duration) (ClientKey, error) {
	if d := now.Unix() - s.Unix; d > int64(window/time.Second) || -d > int64(window/time.Second) {
		return ClientKey{}, ErrSignatureStale
	}
	if k == nil {
		return ClientKey{}, ErrSignatureInvalid
	}
	d, ok := k.byName[s.Name]
	if !ok {
		// The same work as for a known name, so the time taken does not tell.
		d = [sha256.Size]byte{}
	}
	mac := hmac.New(sha256.New, d[:])
	mac.Write(SignatureMessage(method, target, s.Unix))
	if !hmac.Equal(mac.Sum(nil), s.MAC[:]) || !ok {
		return ClientKey{}, ErrSignatureInvalid
	}
	return k.byDigest[d], nil
}

// CheckPrivate refuses a client keys file that its group or others may
// read: with signed requests on, its digests are the HMAC keys, and whoever
// reads them can sign as any client.
func CheckPrivate(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("auth: %w", err)
	}
	if m := fi.Mode().Perm(); m&0o044 != 0 {
		return fmt.Errorf("auth: client keys file %s is readable by its group or others (mode %04o) while clients.signature is on: its digests sign requests; run chmod go-rw %s", path, m, path)
	}
	return nil
}
