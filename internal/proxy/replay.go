package proxy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync/atomic"
)

// errClientBody: the client's request body could not be read (400).
var errClientBody = errors.New("proxy: reading the request body")

// replay makes a request body available to several tries. A body whose
// length is known and at most max bytes is read once into memory and replayed;
// any other body (larger, or chunked and so possibly interactive) streams
// through, and a failed try may be retried only if none of it was read.
type replay struct {
	buffered bool
	buf      []byte
	orig     io.ReadCloser // streaming: the client's body, closed by close
	stream   *countingReader
}

// noBody is shared by every request without a body; it is never modified.
var noBody = &replay{buffered: true}

func newReplay(req *http.Request, max int64) (*replay, error) {
	if req.Body == nil || req.Body == http.NoBody {
		return noBody, nil
	}
	if req.ContentLength >= 0 && req.ContentLength <= max {
		buf, err := io.ReadAll(io.LimitReader(req.Body, req.ContentLength))
		_ = req.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("%w: %w", errClientBody, err)
		}
		return &replay{buffered: true, buf: buf}, nil
	}
	return &replay{orig: req.Body, stream: &countingReader{r: req.Body}}, nil
}

// reader returns the body for the next try. The transport closes what it is
// given; a streaming body survives that, so that an untouched body can be retried.
func (r *replay) reader() io.ReadCloser {
	switch {
	case !r.buffered:
		return r.stream
	case r.buf == nil:
		return nil
	case len(r.buf) == 0:
		return http.NoBody
	}
	return io.NopCloser(bytes.NewReader(r.buf))
}

// getBody lets net/http's Transport replay a buffered body on its own
// internal retries (a reused connection found dead).
func (r *replay) getBody() func() (io.ReadCloser, error) {
	if !r.buffered {
		return nil
	}
	return func() (io.ReadCloser, error) { return r.reader(), nil }
}

// replayable reports whether every try can send the whole body again.
func (r *replay) replayable() bool { return r.buffered }

// untouched reports whether no try has read any of a streaming body.
func (r *replay) untouched() bool { return r.buffered || r.stream.n.Load() == 0 }

// close closes the client's body once no try needs it any more.
func (r *replay) close() {
	if r.orig != nil {
		_ = r.orig.Close()
	}
}

// countingReader counts the bytes read and ignores Close (see reader).
type countingReader struct {
	r io.Reader
	n atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

func (c *countingReader) Close() error { return nil }
