// Command panels draws a Grafana dashboard's panels from a Prometheus server into one HTML
// page of inline SVG, which render.sh screenshots with headless Chromium. It is not Grafana: it
// reads the dashboard JSON, runs each target's PromQL (with the dashboard variables replaced:
// $__rate_interval by -rate-interval, $resource and other query variables by their "All"
// value) against /api/v1/query_range, and draws rows, stat panels (last value, a sparkline,
// thresholds) and time series (lines, unit-formatted axes, a legend table with the panel's
// calcs) where the dashboard's gridPos puts them. Panel types it does not know are drawn as a
// box that says so, never silently left out.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"html"
	"io"
	"log"
	"math"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Grafana's grid: 24 columns, rows of 30 px with 8 px between panels.
const (
	pageWidth  = 1600
	pad        = 16
	cellHeight = 30
	margin     = 8
	headHeight = 86
)

// The classic Grafana palette, in its order.
var palette = []string{"#73BF69", "#F2CC0C", "#8AB8FF", "#FF780A", "#F2495C", "#5794F2",
	"#B877D9", "#FF9830", "#96D98D", "#FFEE52", "#CA95E5", "#FFA6B0", "#C0D8FF", "#56A64B"}

type dashboard struct {
	Title      string `json:"title"`
	Templating struct {
		List []struct {
			Name     string `json:"name"`
			Type     string `json:"type"`
			AllValue string `json:"allValue"`
		} `json:"list"`
	} `json:"templating"`
	Panels []panel `json:"panels"`
}

type panel struct {
	Title   string `json:"title"`
	Type    string `json:"type"`
	GridPos struct {
		H, W, X, Y int
	} `json:"gridPos"`
	Targets []struct {
		Expr         string `json:"expr"`
		LegendFormat string `json:"legendFormat"`
	} `json:"targets"`
	FieldConfig struct {
		Defaults struct {
			Unit       string      `json:"unit"`
			Thresholds *thresholds `json:"thresholds"`
		} `json:"defaults"`
		Overrides []struct {
			Matcher struct {
				ID      string `json:"id"`
				Options string `json:"options"`
			} `json:"matcher"`
			Properties []struct {
				ID    string          `json:"id"`
				Value json.RawMessage `json:"value"`
			} `json:"properties"`
		} `json:"overrides"`
	} `json:"fieldConfig"`
	Options struct {
		ColorMode string `json:"colorMode"`
		Legend    struct {
			Calcs    []string `json:"calcs"`
			SortBy   string   `json:"sortBy"` // a calc's display name, "Max"
			SortDesc bool     `json:"sortDesc"`
		} `json:"legend"`
	} `json:"options"`
}

type thresholds struct {
	Steps []struct {
		Color string   `json:"color"`
		Value *float64 `json:"value"`
	} `json:"steps"`
}

// Grafana's default thresholds for a stat panel: green, red from 80.
var defaultThresholds = func() *thresholds {
	var t thresholds
	json.Unmarshal([]byte(`{"steps":[{"color":"green","value":null},{"color":"red","value":80}]}`), &t)
	return &t
}()

var namedColors = map[string]string{"green": "#73BF69", "red": "#F2495C", "yellow": "#FADE2A",
	"orange": "#FF9830", "blue": "#5794F2"}

func (t *thresholds) color(v float64) string {
	c := "green"
	for _, s := range t.Steps {
		if s.Value == nil || v >= *s.Value {
			c = s.Color
		}
	}
	if n, ok := namedColors[c]; ok {
		return n
	}
	return c
}

type series struct {
	name   string
	times  []float64 // unix seconds
	values []float64 // NaN for a gap
}

func main() {
	var (
		dashPath = flag.String("dashboard", "examples/observability/grafana-dashboard.json", "the dashboard JSON")
		prom     = flag.String("prometheus", "", "Prometheus base URL, e.g. http://127.0.0.1:9090 (required)")
		start    = flag.Int64("start", 0, "range start, unix seconds (required)")
		end      = flag.Int64("end", 0, "range end, unix seconds (required)")
		step     = flag.Duration("step", 2*time.Second, "query_range step")
		rate     = flag.String("rate-interval", "10s", "what $__rate_interval stands for")
		out      = flag.String("out", "dashboard.html", "the HTML page to write; its height in px goes to <out>.height")
	)
	flag.Parse()
	if *prom == "" || *start == 0 || *end <= *start {
		log.Fatal("panels: -prometheus, -start and -end (after start) are required")
	}
	raw, err := os.ReadFile(*dashPath)
	if err != nil {
		log.Fatal("panels: ", err)
	}
	var d dashboard
	if err := json.Unmarshal(raw, &d); err != nil {
		log.Fatal("panels: ", *dashPath, ": ", err)
	}
	vars := map[string]string{"__rate_interval": *rate}
	for _, v := range d.Templating.List {
		if v.Type == "query" {
			all := v.AllValue
			if all == "" {
				all = ".*"
			}
			vars[v.Name] = all
		}
	}
	r := &renderer{prom: strings.TrimSuffix(*prom, "/"), start: *start, end: *end, step: *step,
		vars: vars, client: &http.Client{Timeout: 30 * time.Second}}
	page, height, err := r.page(&d)
	if err != nil {
		log.Fatal("panels: ", err)
	}
	if err := os.WriteFile(*out, []byte(page), 0o644); err != nil {
		log.Fatal("panels: ", err)
	}
	if err := os.WriteFile(*out+".height", []byte(strconv.Itoa(height)), 0o644); err != nil {
		log.Fatal("panels: ", err)
	}
}

type renderer struct {
	prom       string
	start, end int64
	step       time.Duration
	vars       map[string]string
	client     *http.Client
	empty      []string // panels whose queries returned no series
}

var varRE = regexp.MustCompile(`\$\{?(\w+)\}?`)

// expand replaces the dashboard variables in a query as Grafana would for "All".
func (r *renderer) expand(expr string) (string, error) {
	var missing []string
	out := varRE.ReplaceAllStringFunc(expr, func(m string) string {
		name := varRE.FindStringSubmatch(m)[1]
		if v, ok := r.vars[name]; ok {
			return v
		}
		missing = append(missing, name)
		return m
	})
	if len(missing) > 0 {
		return "", fmt.Errorf("query %q uses unknown variables %v", expr, missing)
	}
	return out, nil
}

func (r *renderer) query(expr string) ([]series, error) {
	q := url.Values{"query": {expr}, "start": {strconv.FormatInt(r.start, 10)},
		"end": {strconv.FormatInt(r.end, 10)}, "step": {strconv.FormatFloat(r.step.Seconds(), 'f', -1, 64)}}
	resp, err := r.client.PostForm(r.prom+"/api/v1/query_range", q)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, err
	}
	var ans struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []struct {
				Metric map[string]string `json:"metric"`
				Values [][2]any          `json:"values"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &ans); err != nil {
		return nil, fmt.Errorf("query %q: %w", expr, err)
	}
	if ans.Status != "success" {
		return nil, fmt.Errorf("query %q: %s", expr, ans.Error)
	}
	var out []series
	for _, res := range ans.Data.Result {
		s := series{name: legendPlaceholder(res.Metric)} // the legend replaces it
		for _, v := range res.Values {
			t, _ := v[0].(float64)
			str, _ := v[1].(string)
			f, err := strconv.ParseFloat(str, 64)
			if err != nil || math.IsInf(f, 0) {
				f = math.NaN()
			}
			s.times = append(s.times, t)
			s.values = append(s.values, f)
		}
		out = append(out, s)
	}
	return out, nil
}

// legendPlaceholder keeps the labels in the name until the legend format is applied.
func legendPlaceholder(m map[string]string) string {
	b, _ := json.Marshal(m)
	return string(b)
}

func labelsString(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, k+"="+strconv.Quote(m[k]))
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

var legendRE = regexp.MustCompile(`\{\{\s*(\w+)\s*\}\}`)

func legend(format, labelsJSON string) string {
	var m map[string]string
	json.Unmarshal([]byte(labelsJSON), &m)
	name := strings.TrimSpace(legendRE.ReplaceAllStringFunc(format, func(s string) string {
		return m[legendRE.FindStringSubmatch(s)[1]]
	}))
	if name == "" { // as Grafana: the labels when the format names none that are set
		return labelsString(m)
	}
	return name
}

func (r *renderer) panelSeries(p *panel) ([]series, error) {
	var all []series
	for _, t := range p.Targets {
		expr, err := r.expand(t.Expr)
		if err != nil {
			return nil, err
		}
		ss, err := r.query(expr)
		if err != nil {
			return nil, err
		}
		sort.Slice(ss, func(i, j int) bool { return ss[i].name < ss[j].name })
		for i := range ss {
			ss[i].name = legend(t.LegendFormat, ss[i].name)
		}
		all = append(all, ss...)
	}
	return all, nil
}

func (r *renderer) page(d *dashboard) (string, int, error) {
	colW := float64(pageWidth-2*pad+margin) / 24
	var b strings.Builder
	bottom := 0
	for i := range d.Panels {
		p := &d.Panels[i]
		g := p.GridPos
		x := pad + int(float64(g.X)*colW)
		y := headHeight + g.Y*(cellHeight+margin)
		w := int(float64(g.W)*colW) - margin
		h := g.H*cellHeight + (g.H-1)*margin
		bottom = max(bottom, y+h)
		if p.Type == "row" {
			fmt.Fprintf(&b, `<div class="row" style="left:%dpx;top:%dpx;width:%dpx;height:%dpx">&#9662; %s</div>`,
				x, y, w, h, html.EscapeString(p.Title))
			continue
		}
		fmt.Fprintf(&b, `<div class="panel" style="left:%dpx;top:%dpx;width:%dpx;height:%dpx"><div class="title">%s</div>`,
			x, y, w, h, html.EscapeString(p.Title))
		ss, err := r.panelSeries(p)
		if err != nil {
			return "", 0, fmt.Errorf("panel %q: %w", p.Title, err)
		}
		if len(ss) == 0 {
			r.empty = append(r.empty, p.Title)
		}
		switch p.Type {
		case "stat":
			b.WriteString(statSVG(p, ss, w, h-32))
		case "timeseries":
			b.WriteString(timeSVG(p, ss, w, h-32, r.start, r.end))
		default:
			fmt.Fprintf(&b, `<div class="nodata">panel type %q is not drawn by this renderer</div>`, html.EscapeString(p.Type))
		}
		b.WriteString(`</div>`)
	}
	if len(r.empty) > 0 {
		log.Printf("panels: no data for %s", strings.Join(r.empty, ", "))
	}
	height := bottom + pad
	from := time.Unix(r.start, 0).UTC().Format("2006-01-02 15:04:05")
	to := time.Unix(r.end, 0).UTC().Format("15:04:05 MST")
	var page strings.Builder
	fmt.Fprintf(&page, `<!doctype html><html><head><meta charset="utf-8"><title>%s</title><style>
body{margin:0;background:#111217;color:#ccccdc;font:13px Inter,"DejaVu Sans",Helvetica,Arial,sans-serif;width:%dpx;height:%dpx;position:relative;overflow:hidden}
.head{position:absolute;left:%dpx;top:12px;right:%dpx}
.head h1{font-size:19px;font-weight:500;margin:0 0 8px;color:#d8d9da}
.vars span{display:inline-block;background:#181b1f;border:1px solid #2c3235;border-radius:2px;padding:3px 8px;margin-right:8px}
.vars b{color:#6e9fff;font-weight:500;margin-right:6px}
.note{position:absolute;right:0;top:2px;color:#8e8e9e;font-size:12px;text-align:right;line-height:17px}
.row{position:absolute;font-size:15px;font-weight:500;color:#d8d9da;line-height:30px}
.panel{position:absolute;background:#181b1f;border:1px solid #2c3235;border-radius:2px;box-sizing:border-box;overflow:hidden}
.title{height:32px;line-height:32px;padding:0 8px;font-weight:500;color:#d8d9da;white-space:nowrap;overflow:hidden}
.nodata{padding:20px;color:#8e8e9e}
svg text{font-family:Inter,"DejaVu Sans",Helvetica,Arial,sans-serif}
</style></head><body>
<div class="head"><h1>%s</h1><div class="vars"><span><b>Data source</b>prometheus (local)</span><span><b>Resource</b>All</span><span><b>Time</b>%s to %s</span></div>
<div class="note">The dashboard's own panels, layout and PromQL (grafana-dashboard.json),<br>run against a real Prometheus scraping a local Caddy with mcp_auth under load,<br>drawn by examples/observability/render, not by Grafana.</div></div>
`, html.EscapeString(d.Title), pageWidth, height, pad, pad, html.EscapeString(d.Title), from, to)
	page.WriteString(b.String())
	page.WriteString("</body></html>\n")
	return page.String(), height, nil
}

// format writes v in the panel's unit, as Grafana would, roughly.
func format(unit string, v float64) string {
	if math.IsNaN(v) {
		return "No data"
	}
	switch unit {
	case "percentunit":
		return trim(v*100, 1) + "%"
	case "reqps":
		return short(v) + " req/s"
	case "s":
		a := math.Abs(v)
		switch {
		case a == 0:
			return "0 s"
		case a < 1e-3:
			return trim(v*1e6, 0) + " µs"
		case a < 1:
			return trim(v*1e3, 1) + " ms"
		default:
			return trim(v, 2) + " s"
		}
	default:
		return short(v)
	}
}

func short(v float64) string {
	a := math.Abs(v)
	switch {
	case a >= 1e6:
		return trim(v/1e6, 2) + " M"
	case a >= 1e3:
		return trim(v/1e3, 2) + " K"
	case a >= 10 || a == 0:
		return trim(v, 1)
	case a >= 1:
		return trim(v, 2)
	default:
		return trim(v, 3)
	}
}

func trim(v float64, prec int) string {
	s := strconv.FormatFloat(v, 'f', prec, 64)
	if strings.Contains(s, ".") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	return s
}

func last(s series) float64 {
	for i := len(s.values) - 1; i >= 0; i-- {
		if !math.IsNaN(s.values[i]) {
			return s.values[i]
		}
	}
	return math.NaN()
}

func calc(name string, s series) float64 {
	n, sum, mx := 0, 0.0, math.Inf(-1)
	for _, v := range s.values {
		if math.IsNaN(v) {
			continue
		}
		n++
		sum += v
		mx = math.Max(mx, v)
	}
	if n == 0 {
		return math.NaN()
	}
	switch name {
	case "mean":
		return sum / float64(n)
	case "max":
		return mx
	case "lastNotNull", "last":
		return last(s)
	}
	return math.NaN()
}

// thresholdsFor returns the thresholds of a series: an override by name, else the defaults.
func thresholdsFor(p *panel, name string) *thresholds {
	for _, o := range p.FieldConfig.Overrides {
		if o.Matcher.ID != "byName" || o.Matcher.Options != name {
			continue
		}
		for _, prop := range o.Properties {
			if prop.ID == "thresholds" {
				var t thresholds
				if json.Unmarshal(prop.Value, &t) == nil {
					return &t
				}
			}
		}
	}
	if p.FieldConfig.Defaults.Thresholds != nil {
		return p.FieldConfig.Defaults.Thresholds
	}
	return defaultThresholds
}

func statSVG(p *panel, ss []series, w, h int) string {
	if len(ss) == 0 {
		return `<div class="nodata" style="text-align:center;font-size:22px;padding-top:60px">No data</div>`
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg width="%d" height="%d">`, w-2, h)
	cw := float64(w-16) / float64(len(ss))
	for i, s := range ss {
		v := last(s)
		color := thresholdsFor(p, s.name).color(v)
		if math.IsNaN(v) {
			color = "#8e8e9e"
		}
		x0 := 8 + float64(i)*cw
		text := color
		if p.Options.ColorMode == "background" {
			fmt.Fprintf(&b, `<rect x="%.1f" y="4" width="%.1f" height="%d" rx="2" fill="%s"/>`, x0, cw-6, h-12, color)
			text = "#ffffff"
		} else {
			b.WriteString(sparkline(s, x0, float64(h)*0.55, cw-6, float64(h)*0.4, color))
		}
		size := math.Min(float64(h)*0.28, cw/5)
		if len(ss) > 1 { // as Grafana's text mode "auto": a name only when there are several
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle" font-size="%.0f" fill="%s">%s</text>`,
				x0+(cw-6)/2, float64(h)*0.22, math.Max(12, size*0.45), text, html.EscapeString(s.name))
		}
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle" font-size="%.0f" font-weight="500" fill="%s">%s</text>`,
			x0+(cw-6)/2, float64(h)*0.22+size*1.1, size, text, html.EscapeString(format(p.FieldConfig.Defaults.Unit, v)))
	}
	b.WriteString(`</svg>`)
	return b.String()
}

func sparkline(s series, x, y, w, h float64, color string) string {
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, v := range s.values {
		if !math.IsNaN(v) {
			lo, hi = math.Min(lo, v), math.Max(hi, v)
		}
	}
	if math.IsInf(lo, 0) {
		return ""
	}
	lo = math.Min(lo, 0)
	if hi == lo {
		hi = lo + 1
	}
	t0, t1 := s.times[0], s.times[len(s.times)-1]
	if t1 == t0 {
		t1 = t0 + 1
	}
	var pts []string
	for i, v := range s.values {
		if math.IsNaN(v) {
			continue
		}
		px := x + (s.times[i]-t0)/(t1-t0)*w
		py := y + h - (v-lo)/(hi-lo)*h
		pts = append(pts, fmt.Sprintf("%.1f,%.1f", px, py))
	}
	if len(pts) < 2 {
		return ""
	}
	area := fmt.Sprintf("%.1f,%.1f %s %.1f,%.1f", x, y+h, strings.Join(pts, " "), x+w, y+h)
	return fmt.Sprintf(`<polygon points="%s" fill="%s" fill-opacity="0.15"/><polyline points="%s" fill="none" stroke="%s" stroke-width="1.5"/>`,
		area, color, strings.Join(pts, " "), color)
}

// niceStep picks a tick step of 1, 2 or 5 times a power of ten.
func niceStep(span float64, ticks int) float64 {
	raw := span / float64(ticks)
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if raw <= m*mag {
			return m * mag
		}
	}
	return 10 * mag
}

func timeSVG(p *panel, ss []series, w, h int, start, end int64) string {
	unit := p.FieldConfig.Defaults.Unit
	calcs := p.Options.Legend.Calcs
	// The legend table on the right, as the dashboard asks (displayMode table, placement right).
	longest := 4
	for _, s := range ss {
		longest = max(longest, len([]rune(s.name)))
	}
	legendW := min(int(float64(w)*0.5), longest*7+24+len(calcs)*78)
	plotW := w - legendW - 2
	left, right, top, bottom := 70.0, 10.0, 6.0, 22.0
	pw, ph := float64(plotW)-left-right, float64(h)-top-bottom

	hi := 0.0
	for _, s := range ss {
		for _, v := range s.values {
			if !math.IsNaN(v) {
				hi = math.Max(hi, v)
			}
		}
	}
	if hi == 0 {
		hi = 1
	}
	ystep := niceStep(hi, 4)
	hi = math.Ceil(hi/ystep) * ystep
	var b strings.Builder
	fmt.Fprintf(&b, `<svg width="%d" height="%d">`, w-2, h)
	for v := 0.0; v <= hi+ystep/2; v += ystep {
		py := top + ph - v/hi*ph
		fmt.Fprintf(&b, `<line x1="%.0f" x2="%.0f" y1="%.1f" y2="%.1f" stroke="#2c3235"/>`, left, left+pw, py, py)
		fmt.Fprintf(&b, `<text x="%.0f" y="%.1f" text-anchor="end" font-size="11" fill="#8e8e9e">%s</text>`,
			left-6, py+4, html.EscapeString(format(unit, v)))
	}
	span := float64(end - start)
	tstep := 30.0
	for span/tstep > 7 || pw*tstep/span < 70 { // at most 7 ticks, 70 px apart
		tstep *= 2
	}
	for t := math.Ceil(float64(start)/tstep) * tstep; t <= float64(end); t += tstep {
		px := left + (t-float64(start))/span*pw
		if px < left+25 || px > left+pw-25 { // a label there would run into the axis or the edge
			continue
		}
		fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%.0f" y2="%.1f" stroke="#2c3235"/>`, px, px, top, top+ph)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle" font-size="11" fill="#8e8e9e">%s</text>`,
			px, top+ph+15, time.Unix(int64(t), 0).UTC().Format("15:04:05"))
	}
	for i, s := range ss {
		color := palette[i%len(palette)]
		var path strings.Builder
		pen := false
		for j, v := range s.values {
			if math.IsNaN(v) {
				pen = false
				continue
			}
			px := left + (s.times[j]-float64(start))/span*pw
			py := top + ph - v/hi*ph
			if pen {
				fmt.Fprintf(&path, "L%.1f %.1f", px, py)
			} else {
				fmt.Fprintf(&path, "M%.1f %.1f", px, py)
				pen = true
			}
		}
		fmt.Fprintf(&b, `<path d="%s" fill="none" stroke="%s" stroke-width="1.4"/>`, path.String(), color)
	}
	if len(ss) == 0 {
		fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" text-anchor="middle" font-size="16" fill="#8e8e9e">No data</text>`, left+pw/2, top+ph/2)
	}
	// Legend: name, then the calcs.
	lx := float64(plotW) + 4
	fmt.Fprintf(&b, `<text x="%.0f" y="14" font-size="11" fill="#8e8e9e">Name</text>`, lx+16)
	for k, c := range calcs {
		fmt.Fprintf(&b, `<text x="%.0f" y="14" text-anchor="end" font-size="11" fill="#6e9fff">%s</text>`,
			float64(w)-12-float64(len(calcs)-1-k)*78, html.EscapeString(strings.ToUpper(c[:1])+c[1:]))
	}
	// Colours follow the query order, as Grafana's; the legend rows follow sortBy.
	order := make([]int, len(ss))
	for i := range order {
		order[i] = i
	}
	if by := strings.ToLower(p.Options.Legend.SortBy); by != "" {
		key := func(i int) float64 {
			v := calc(by, ss[i])
			if math.IsNaN(v) {
				return math.Inf(-1)
			}
			return v
		}
		sort.SliceStable(order, func(a, b int) bool {
			if p.Options.Legend.SortDesc {
				return key(order[a]) > key(order[b])
			}
			return key(order[a]) < key(order[b])
		})
	}
	for i, idx := range order {
		s := ss[idx]
		ly := 32 + float64(i)*19
		if ly+19 > float64(h)-4 && i < len(ss)-1 { // Grafana scrolls; a picture says how many are left
			fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" font-size="12" fill="#8e8e9e">… and %d more series</text>`, lx+16, ly, len(ss)-i)
			break
		}
		color := palette[idx%len(palette)]
		fmt.Fprintf(&b, `<rect x="%.0f" y="%.0f" width="10" height="3" fill="%s"/>`, lx, ly-4, color)
		fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" font-size="12" fill="#ccccdc">%s</text>`, lx+16, ly, html.EscapeString(s.name))
		for k, c := range calcs {
			fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" text-anchor="end" font-size="12" fill="#ccccdc">%s</text>`,
				float64(w)-12-float64(len(calcs)-1-k)*78, ly, html.EscapeString(format(unit, calc(c, s))))
		}
	}
	b.WriteString(`</svg>`)
	return b.String()
}
