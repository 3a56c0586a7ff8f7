package proxy_test

import (
	"io"
	"net/http"
	"testing"
)

// BenchmarkProxyGET measures one proxied GET over keep-alive connections
// (go test -bench ProxyGET -benchmem ./internal/proxy).
func BenchmarkProxyGET(b *testing.B) {
	cfg := baseConfig()
	h := mustStart(b, cfg, nil)
	for i, name := range []string{"a", "b", "c"} {
		h.p.SetBackend("web/"+string(rune('0'+i)), backend(b, named(name)), true)
	}
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			res, err := c.Get(h.url + "/")
			if err != nil {
				b.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, res.Body)
			res.Body.Close()
		}
	})
}
