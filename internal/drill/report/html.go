package report

import (
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/medic-dev/medic/internal/drill"
	"github.com/medic-dev/medic/internal/drill/load"
)

var page = template.Must(template.New("drill").Funcs(template.FuncMap{
	"secs": Secs,
	"ms":   ms,
	"plus": plus,
	"upper": func(s string) string {
		return map[string]string{"passed": "PASSED", "failed": "FAILED", "aborted": "ABORTED"}[s]
	},
	"target": target,
	"load":   loadText,
	"params": params,
	"actor":  actor,
	"utc":    func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 MST") },
	"phases": func(p drill.Phases) []struct {
		Name string
		S    load.Summary
	} {
		return []struct {
			Name string
			S    load.Summary
		}{{"before", p.Before}, {"during", p.During}, {"after", p.After}}
	},
}).Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>medic drill {{.R.ID}}: {{.R.Scenario}} on {{target .R}} — {{upper .R.State}}</title>
<style>
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px auto;max-width:1000px;color:#1d2430;padding:0 12px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:16px;margin:28px 0 8px;border-bottom:1px solid #d8dde6;padding-bottom:4px}
.badge{display:inline-block;padding:2px 10px;border-radius:12px;color:#fff;font-weight:600;font-size:13px;vertical-align:middle}
.passed{background:#1f883d}.failed,.aborted{background:#cf222e}.running{background:#9a6700}
table{border-collapse:collapse;width:100%}td,th{text-align:left;padding:4px 8px;border-bottom:1px solid #eef0f4;vertical-align:top}
th{font-weight:600;color:#57606a}.kv td:first-child{width:240px;color:#57606a}.num{text-align:right;font-variant-numeric:tabular-nums}
.reasons li{color:#a40e26}.muted{color:#57606a}code{font-size:12px}
svg text{font-size:11px;fill:#57606a}svg .title{font-size:12px;fill:#1d2430}
.grid{stroke:#eef0f4}.axisline{stroke:#8c959f}.fault{fill:#fff1e5}
.p50{fill:none;stroke:#0969da;stroke-width:1.5}.p99{fill:none;stroke:#8250df;stroke-width:1.5}.err{fill:#cf222e;opacity:.8}
.m-inject line{stroke:#bc4c00;stroke-width:2}.m-detect line{stroke:#0969da;stroke-width:2;stroke-dasharray:4 2}
.m-recover line{stroke:#1f883d;stroke-width:2}.m-restore line{stroke:#6e7781;stroke-width:2;stroke-dasharray:2 2}
.m-action line{stroke:#8c959f;stroke-width:1;stroke-dasharray:1 3}.m-action text{font-size:9px}
details summary{cursor:pointer;color:#0969da}
</style></head><body>
<h1>Drill {{.R.ID}}: {{.R.Scenario}} on {{target .R}} <span class="badge {{.R.State}}">{{upper .R.State}}</span></h1>
<div class="muted">{{.R.Definition.Description}}</div>
{{if .R.Reasons}}<h2>Why it failed</h2><ul class="reasons">{{range .R.Reasons}}<li>{{.}}</li>{{end}}</ul>{{end}}
<h2>Result</h2>
<table class="kv">
<tr><td>failure mode</td><td>{{.R.FailureMode}}</td></tr>
<tr><td>time to detect</td><td><b>{{secs .R.TTD}}</b>{{with .R.Detected}} <span class="muted">{{.Kind}} on {{.Target}}{{if .Seq}}, audit #{{.Seq}}{{end}}</span>{{end}}</td></tr>
<tr><td>time to recover</td><td><b>{{secs .R.TTR}}</b>{{with .R.Recovered}} <span class="muted">{{.Kind}} on {{.Target}}{{if .Seq}}, audit #{{.Seq}}{{end}}</span>{{end}}</td></tr>
<tr><td>back at full capacity after</td><td>{{secs .R.FullCapacity}}</td></tr>
<tr><td>client impact</td><td>{{secs .R.ClientImpact}} <span class="muted">(last request failed or slower than {{ms .R.SLO}})</span></td></tr>
<tr><td>client-visible errors</td><td>{{.R.ClientErrors}} of {{.R.Requests}} requests{{range $k, $v := .R.ErrorKinds}} · {{$v}} {{$k}}{{end}} <span class="muted">(allowed {{printf "%.2f" .Pct}}%)</span></td></tr>
{{with .R.Writes}}<tr><td>acknowledged writes</td><td>{{.Acked}}, {{.Lost}} lost{{if .Lossless}} (synchronous replication: none may be lost){{end}}{{with .Error}} · {{.}}{{end}}</td></tr>
<tr><td>write outage (RTO)</td><td>{{secs .RTO}}</td></tr>{{end}}
<tr><td>fault</td><td><code>{{.R.Definition.Fault.Kind}}{{params .R.Definition.Fault.Params}}</code></td></tr>
<tr><td>load</td><td>{{load .R.Load}}</td></tr>
<tr><td>started</td><td>{{utc .R.Marks.Start}} by {{.R.Actor}}; deadline {{.R.Definition.Deadline}}</td></tr>
</table>
<h2>Timeline</h2>
{{.Chart}}
<h2>Latency by phase</h2>
<table><tr><th>phase</th><th class="num">requests</th><th class="num">p50</th><th class="num">p90</th><th class="num">p99</th><th class="num">p99.9</th><th class="num">max</th></tr>
{{range phases .R.Latency}}<tr><td>{{.Name}}</td><td class="num">{{.S.Count}}</td><td class="num">{{ms .S.P50}}</td><td class="num">{{ms .S.P90}}</td><td class="num">{{ms .S.P99}}</td><td class="num">{{ms .S.P999}}</td><td class="num">{{ms .S.Max}}</td></tr>
{{end}}</table>
<h2>What the drill did</h2>
<table><tr><th>at</th><th>audit</th><th>step</th><th>detail</th></tr>
{{range .R.Steps}}<tr><td>{{plus .Time $.R.Marks.Inject}}</td><td>{{if .Seq}}#{{.Seq}}{{end}}</td><td>{{.Action}}</td><td>{{.Detail}}{{if .Error}} <b>error: {{.Error}}</b>{{end}}</td></tr>
{{end}}</table>
<h2>What medic did</h2>
<table><tr><th>at</th><th>audit</th><th>event</th><th>target</th><th>actor</th><th>reason</th></tr>
{{range .R.Actions}}<tr><td>{{plus .Time $.R.Marks.Inject}}</td><td>{{if .Seq}}#{{.Seq}}{{end}}</td><td>{{.Kind}}</td><td>{{.Target}}</td><td>{{actor .Actor}}</td><td>{{.Reason}}</td></tr>
{{else}}<tr><td colspan="6" class="muted">no action</td></tr>{{end}}</table>
<h2>Every event</h2>
<details><summary>{{len .R.Timeline}} events from the audit log and the drill's own observations</summary>
<table><tr><th>at</th><th>audit</th><th>event</th><th>target</th><th>actor</th><th>reason</th></tr>
{{range .R.Timeline}}<tr><td>{{plus .Time $.R.Marks.Inject}}</td><td>{{if .Seq}}#{{.Seq}}{{end}}</td><td>{{.Kind}}</td><td>{{.Target}}</td><td>{{actor .Actor}}</td><td>{{.Reason}}</td></tr>
{{end}}</table></details>
<p class="muted">Times are relative to the injection. Generated by medic; this page has no script and loads nothing.</p>
</body></html>
`))

// HTML writes the self-contained HTML report of r.
func HTML(w io.Writer, r *drill.Result) error {
	err := page.Execute(w, struct {
		R     *drill.Result
		Chart template.HTML
		Pct   float64
	}{r, template.HTML(svgChart(r)), 100 * r.Definition.MaxErrorRate}) //nolint:gosec // svgChart escapes every text it draws
	if err != nil {
		return fmt.Errorf("render the HTML report of drill %d: %w", r.ID, err)
	}
	return nil
}

// Write writes report.json, report.html and report.md for r into dir
// (created if needed) and returns the HTML file's path.
func Write(dir string, r *drill.Result) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("create report directory %s: %w", dir, err)
	}
	files := []struct {
		name  string
		write func(io.Writer) error
	}{
		{JSONFile, func(w io.Writer) error {
			enc := json.NewEncoder(w)
			enc.SetIndent("", "  ")
			return enc.Encode(r)
		}},
		{HTMLFile, func(w io.Writer) error { return HTML(w, r) }},
		{MarkdownFile, func(w io.Writer) error { return Markdown(w, r) }},
	}
	for _, f := range files {
		path := filepath.Join(dir, f.name)
		fh, err := os.Create(path)
		if err != nil {
			return "", fmt.Errorf("write report: %w", err)
		}
		err = f.write(fh)
		if cerr := fh.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return "", fmt.Errorf("write %s: %w", path, err)
		}
	}
	return filepath.Join(dir, HTMLFile), nil
}
