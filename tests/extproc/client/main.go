// extproc-client plays Envoy against an Envoy ext_proc v3 server (the
// endpoint picker) and prints one JSON object describing what happened.
//
// It is a test tool for tandem's ext_proc server and shares no code with it:
// the messages come from Envoy's published API definitions
// (github.com/envoyproxy/go-control-plane/envoy) and the transport is grpc-go.
//
// Modes:
//
//	single exchange (default)   one Process stream, request phase and an
//	                            optional response phase; JSON report
//	-health SERVICE             grpc.health.v1.Health/Check
//	-bench N                    N full-duplex exchanges over -concurrency
//	                            streams on -conns connections; latency summary
//
// Exit status: 0 when the exchange ended with a gRPC status sent by the server
// (whatever the code, ImmediateResponse included) or with a cancel asked by
// -cancel-after; 1 on transport errors and timeouts (message on stderr, the
// JSON is still printed); 2 on usage errors.
package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand"
	"os"
	"runtime/debug"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	filterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
)

const (
	processMethod  = "/envoy.service.ext_proc.v3.ExternalProcessor/Process"
	maxStreamChunk = 62000 // Envoy rejects larger streamed_response bodies
	maxRecvMsg     = 1 << 30
)

// ---------------------------------------------------------------- options

type headerList []string

func (h *headerList) String() string     { return strings.Join(*h, ",") }
func (h *headerList) Set(v string) error { *h = append(*h, v); return nil }

type options struct {
	addr          string
	useTLS        bool
	wait          bool
	timeout       time.Duration
	health        string
	healthSet     bool
	mode          string
	chunk         int
	trailers      bool
	trailersNoEOS bool
	noProtoConfig bool
	path          string
	authority     string
	headers       headerList
	bodyFile      string
	body          string
	bodySet       bool
	bodySize      int
	prompt        string
	model         string
	seed          int64
	noBody        bool
	subset        string
	subsetEmpty   bool
	metaEvery     bool
	respStatus    int
	respSSE       bool
	respLB        string
	respChunks    int
	respLockstep  bool
	cancelAfter   int
	cancelDelay   time.Duration
	earlyClose    bool
	bench         int
	concurrency   int
	conns         int
	warmup        int
	variants      int
	cpuProfile    string
}

func usage(format string, a ...any) int {
	fmt.Fprintf(os.Stderr, "extproc-client: "+format+"\n", a...)
	return 2
}

func main() { os.Exit(run()) }

func run() int {
	var o options
	fs := flag.NewFlagSet("extproc-client", flag.ContinueOnError)
	fs.StringVar(&o.addr, "addr", "", "ext_proc server host:port (required)")
	fs.BoolVar(&o.useTLS, "tls", false, "TLS without certificate verification (as Istio does); plaintext otherwise")
	fs.BoolVar(&o.wait, "wait", false, "wait for the server to become reachable (within -timeout) instead of failing fast")
	fs.DurationVar(&o.timeout, "timeout", 0, "limit for the whole run (default 30s, 10m with -bench)")
	fs.StringVar(&o.health, "health", "", "call grpc.health.v1.Health/Check for this service instead of ext_proc")
	fs.StringVar(&o.mode, "mode", "full", "body mode: full (FULL_DUPLEX_STREAMED) or buffered (BUFFERED)")
	fs.IntVar(&o.chunk, "chunk", 16384, "request_body chunk size in full mode")
	fs.BoolVar(&o.trailers, "trailers", false, "send request_trailers after the body")
	fs.BoolVar(&o.trailersNoEOS, "trailers-no-eos", false, "with -trailers: the last body chunk has end_of_stream=false, the trailers end the request (Envoy with downstream trailers)")
	fs.BoolVar(&o.noProtoConfig, "no-protocol-config", false, "do not send protocol_config in the first message (older Envoy)")
	fs.StringVar(&o.path, "path", "/v1/completions", ":path of the request")
	fs.StringVar(&o.authority, "authority", "tandem.test", ":authority of the request")
	fs.Var(&o.headers, "H", "extra request header k:v (repeatable; replaces a default header of the same name)")
	fs.StringVar(&o.bodyFile, "body-file", "", "request body from this file")
	fs.StringVar(&o.body, "body", "", "request body string")
	fs.IntVar(&o.bodySize, "body-size", -1, "generate an OpenAI completions body of about N bytes")
	fs.StringVar(&o.prompt, "prompt", "Hello, world", "prompt of the small default body")
	fs.StringVar(&o.model, "model", "m", "model of generated bodies")
	fs.Int64Var(&o.seed, "seed", 1, "seed of the words of -body-size bodies")
	fs.BoolVar(&o.noBody, "no-body", false, "no body: request_headers with end_of_stream=true")
	fs.StringVar(&o.subset, "subset", "", "subset hint ip:port,ip:port (metadata envoy.lb.subset_hint)")
	fs.BoolVar(&o.subsetEmpty, "subset-empty", false, "send an empty subset hint list")
	fs.BoolVar(&o.metaEvery, "metadata-every", false, "attach metadata_context to every request-phase message, not only the first")
	fs.IntVar(&o.respStatus, "resp-status", 0, "run the response phase with this :status (0: none)")
	fs.BoolVar(&o.respSSE, "resp-sse", false, "response is text/event-stream (SSE) instead of JSON")
	fs.StringVar(&o.respLB, "resp-lb", "", "metadata_context on response_headers: 'served=V' (envoy.lb x-gateway-destination-endpoint-served V), 'empty' (envoy.lb with no key), '' (none)")
	fs.IntVar(&o.respChunks, "resp-chunks", 3, "number of response_body chunks (SSE: the last is data: [DONE])")
	fs.BoolVar(&o.respLockstep, "resp-lockstep", false, "full mode: wait for each response chunk to be echoed before sending the next")
	fs.IntVar(&o.cancelAfter, "cancel-after", -1, "cancel the stream after sending N request_body chunks (0: right after the headers)")
	fs.DurationVar(&o.cancelDelay, "cancel-delay", 0, "sleep this long before the -cancel-after cancel")
	fs.BoolVar(&o.earlyClose, "early-close", false, "half-close right after the request is sent, without waiting for replies")
	fs.IntVar(&o.bench, "bench", 0, "load mode: run N exchanges (headers + body, full duplex)")
	fs.IntVar(&o.concurrency, "concurrency", 1, "bench: concurrent streams")
	fs.IntVar(&o.conns, "conns", 1, "bench: connections (streams are spread over them)")
	fs.IntVar(&o.warmup, "warmup", 0, "bench: exchanges run before timing starts")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "bench: write a Go CPU profile of the client to this file")
	fs.IntVar(&o.variants, "variants", 1, "bench: number of distinct -body-size bodies to cycle through (different seeds)")
	if err := fs.Parse(os.Args[1:]); err != nil {
		return 2
	}
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "health":
			o.healthSet = true
		case "body":
			o.bodySet = true
		}
	})
	if fs.NArg() > 0 {
		return usage("unexpected argument %q", fs.Arg(0))
	}
	if o.addr == "" {
		return usage("-addr host:port is required")
	}
	if o.mode != "full" && o.mode != "buffered" {
		return usage("-mode must be full or buffered")
	}
	if o.chunk <= 0 {
		return usage("-chunk must be > 0")
	}
	if o.respChunks < 1 {
		return usage("-resp-chunks must be >= 1")
	}
	if o.concurrency < 1 || o.conns < 1 || o.variants < 1 {
		return usage("-concurrency, -conns and -variants must be >= 1")
	}
	if o.timeout == 0 {
		o.timeout = 30 * time.Second
		if o.bench > 0 {
			o.timeout = 10 * time.Minute
		}
	}

	if o.healthSet {
		return runHealth(&o)
	}
	body, err := makeBody(&o, o.seed)
	if err != nil {
		return usage("%v", err)
	}
	if o.bench > 0 {
		return runBench(&o, body)
	}
	return runSingle(&o, body)
}

// ---------------------------------------------------------------- bodies

var words = strings.Fields(`the of and to in is was for on that with as by at from
his her an are were which this be or has had not but they one first new after
who their its also two been more other into time city year when most some
there would school during between state over world only many team years
where through may national three while these then part under since both series
game season such used known high well called number however including second
later family people before early history public would government best model`)

// genBody returns {"model":M,"prompt":"<words>","max_tokens":2} of n bytes
// (at least the size of the wrapper plus one letter).
func genBody(model string, n int, seed int64) []byte {
	mj, _ := json.Marshal(model)
	prefix := `{"model":` + string(mj) + `,"prompt":"`
	const suffix = `","max_tokens":2}`
	need := n - len(prefix) - len(suffix)
	if need < 1 {
		need = 1
	}
	r := rand.New(rand.NewSource(seed))
	b := make([]byte, 0, len(prefix)+need+len(suffix)+16)
	b = append(b, prefix...)
	start := len(b)
	for len(b)-start < need {
		if len(b) > start {
			b = append(b, ' ')
		}
		b = append(b, words[r.Intn(len(words))]...)
	}
	b = b[:start+need]
	if b[len(b)-1] == ' ' {
		b[len(b)-1] = 'a'
	}
	return append(b, suffix...)
}

func makeBody(o *options, seed int64) ([]byte, error) {
	switch {
	case o.noBody:
		return nil, nil
	case o.bodyFile != "":
		return os.ReadFile(o.bodyFile)
	case o.bodySet:
		return []byte(o.body), nil
	case o.bodySize >= 0:
		return genBody(o.model, o.bodySize, seed), nil
	default:
		return json.Marshal(map[string]any{"model": o.model, "prompt": o.prompt, "max_tokens": 2})
	}
}

// ---------------------------------------------------------------- messages

func hv(k, v string) *corev3.HeaderValue {
	return &corev3.HeaderValue{Key: strings.ToLower(k), RawValue: []byte(v)}
}

func headerMap(kv [][2]string) *corev3.HeaderMap {
	m := &corev3.HeaderMap{}
	for _, p := range kv {
		m.Headers = append(m.Headers, hv(p[0], p[1]))
	}
	return m
}

// requestHeaders builds the request header list: defaults, then -H (a -H
// header replaces a default of the same name).
func requestHeaders(o *options, body []byte) ([][2]string, error) {
	kv := [][2]string{
		{":authority", o.authority},
		{":path", o.path},
		{":method", "POST"},
		{":scheme", "http"},
		{"content-type", "application/json"},
	}
	if !o.noBody {
		kv = append(kv, [2]string{"content-length", strconv.Itoa(len(body))})
	}
	kv = append(kv, [2]string{"x-forwarded-proto", "http"})
	for _, h := range o.headers {
		i := -1
		if len(h) > 1 {
			i = strings.IndexByte(h[1:], ':')
		}
		if i < 0 {
			return nil, fmt.Errorf("-H %q: want key:value", h)
		}
		k := strings.ToLower(strings.TrimSpace(h[:i+1]))
		v := strings.TrimSpace(h[i+2:])
		replaced := false
		for j := range kv {
			if kv[j][0] == k {
				kv[j][1] = v
				replaced = true
			}
		}
		if !replaced {
			kv = append(kv, [2]string{k, v})
		}
	}
	return kv, nil
}

func bodyMode(o *options) filterv3.ProcessingMode_BodySendMode {
	if o.mode == "buffered" {
		return filterv3.ProcessingMode_BUFFERED
	}
	return filterv3.ProcessingMode_FULL_DUPLEX_STREAMED
}

func protocolConfig(o *options) *extprocv3.ProtocolConfiguration {
	m := bodyMode(o)
	return &extprocv3.ProtocolConfiguration{RequestBodyMode: m, ResponseBodyMode: m}
}

func metadataContext(o *options) *corev3.Metadata {
	if o.subset == "" && !o.subsetEmpty {
		return nil
	}
	vals := []*structpb.Value{}
	if !o.subsetEmpty {
		for _, s := range strings.Split(o.subset, ",") {
			if s = strings.TrimSpace(s); s != "" {
				vals = append(vals, structpb.NewStringValue(s))
			}
		}
	}
	return &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{
		"envoy.lb.subset_hint": {Fields: map[string]*structpb.Value{
			"x-gateway-destination-endpoint-subset": structpb.NewListValue(&structpb.ListValue{Values: vals}),
		}},
	}}
}

// respLBMetadata: Envoy's envoy.lb namespace on the response_headers message (-resp-lb).
func respLBMetadata(o *options) *corev3.Metadata {
	if o.respLB == "" {
		return nil
	}
	fields := map[string]*structpb.Value{}
	if v, ok := strings.CutPrefix(o.respLB, "served="); ok {
		fields["x-gateway-destination-endpoint-served"] = structpb.NewStringValue(v)
	}
	return &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{
		"envoy.lb": {Fields: fields},
	}}
}

func reqHeadersMsg(kv [][2]string, eos bool) *extprocv3.ProcessingRequest {
	return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestHeaders{
		RequestHeaders: &extprocv3.HttpHeaders{Headers: headerMap(kv), EndOfStream: eos}}}
}

func reqBodyMsg(b []byte, eos bool) *extprocv3.ProcessingRequest {
	return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestBody{
		RequestBody: &extprocv3.HttpBody{Body: b, EndOfStream: eos}}}
}

func reqTrailersMsg() *extprocv3.ProcessingRequest {
	return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestTrailers{
		RequestTrailers: &extprocv3.HttpTrailers{Trailers: headerMap([][2]string{{"x-client-trailer", "1"}})}}}
}

func respHeadersMsg(kv [][2]string) *extprocv3.ProcessingRequest {
	return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseHeaders{
		ResponseHeaders: &extprocv3.HttpHeaders{Headers: headerMap(kv)}}}
}

func respBodyMsg(b []byte, eos bool) *extprocv3.ProcessingRequest {
	return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseBody{
		ResponseBody: &extprocv3.HttpBody{Body: b, EndOfStream: eos}}}
}

// chunks splits b in pieces of at most n bytes (one empty piece for an empty b).
func chunks(b []byte, n int) [][]byte {
	if len(b) == 0 {
		return [][]byte{{}}
	}
	var out [][]byte
	for len(b) > n {
		out = append(out, b[:n])
		b = b[n:]
	}
	return append(out, b)
}

// responseBody returns the upstream response chunks: SSE events (the last one
// "data: [DONE]") or a JSON completion split in k pieces.
func responseBody(o *options) [][]byte {
	k := o.respChunks
	mj, _ := json.Marshal(o.model)
	if o.respSSE {
		out := make([][]byte, 0, k)
		for i := 0; i < k-1; i++ {
			ev := fmt.Sprintf(`{"id":"cmpl-1","object":"text_completion","created":0,"model":%s,"choices":[{"index":0,"text":" tok%d","finish_reason":null}]}`, mj, i)
			if i == k-2 {
				ev = fmt.Sprintf(`{"id":"cmpl-1","object":"text_completion","created":0,"model":%s,"choices":[{"index":0,"text":" tok%d","finish_reason":"length"}],"usage":{"prompt_tokens":5,"completion_tokens":%d,"total_tokens":%d}}`, mj, i, k-1, 5+k-1)
			}
			out = append(out, []byte("data: "+ev+"\n\n"))
		}
		return append(out, []byte("data: [DONE]\n\n"))
	}
	full := []byte(fmt.Sprintf(`{"id":"cmpl-1","object":"text_completion","created":0,"model":%s,"choices":[{"index":0,"text":" tok0 tok1","finish_reason":"length"}],"usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7}}`, mj))
	if k > len(full) {
		k = len(full)
	}
	out := make([][]byte, 0, k)
	for i := 0; i < k; i++ {
		out = append(out, full[len(full)*i/k:len(full)*(i+1)/k])
	}
	return out
}

// ---------------------------------------------------------------- connection

func dial(o *options) (*grpc.ClientConn, error) {
	target := o.addr
	if !strings.Contains(target, "://") {
		target = "passthrough:///" + target
	}
	creds := insecure.NewCredentials()
	if o.useTLS {
		// As Istio does towards the EPP: TLS, no certificate verification.
		// grpc-go offers ALPN "h2" and requires the server to select it.
		creds = credentials.NewTLS(&tls.Config{InsecureSkipVerify: true})
	}
	return grpc.NewClient(target,
		grpc.WithTransportCredentials(creds),
		grpc.WithStaticStreamWindowSize(16<<20),
		grpc.WithStaticConnWindowSize(64<<20),
		grpc.WithReadBufferSize(128<<10),
		grpc.WithWriteBufferSize(128<<10),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxRecvMsg), grpc.WaitForReady(o.wait)),
	)
}

// transportFailure tells whether err means the exchange did not end with a
// gRPC status chosen by the server.
func transportFailure(st *status.Status, weCancelled bool) bool {
	switch st.Code() {
	case codes.OK:
		return false
	case codes.Unavailable, codes.DeadlineExceeded:
		return true
	case codes.Canceled:
		return !weCancelled
	}
	m := st.Message()
	for _, s := range []string{"RST_STREAM", "without sending trailers", "unexpected HTTP status", "malformed header", "transport:", "connection error"} {
		if strings.Contains(m, s) {
			return true
		}
	}
	return false
}

// ---------------------------------------------------------------- health

func runHealth(o *options) int {
	conn, err := dial(o)
	if err != nil {
		fmt.Fprintf(os.Stderr, "extproc-client: %v\n", err)
		return 1
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()
	out := struct {
		Health      string `json:"health"`
		GrpcCode    string `json:"grpc_code"`
		GrpcMessage string `json:"grpc_message"`
		Error       string `json:"error"`
	}{}
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: o.health})
	st := status.Convert(err)
	out.GrpcCode, out.GrpcMessage = st.Code().String(), st.Message()
	if err == nil {
		out.Health = resp.GetStatus().String()
	}
	rc := 0
	if transportFailure(st, false) {
		out.Error = st.Message()
		fmt.Fprintf(os.Stderr, "extproc-client: health check: %v\n", err)
		rc = 1
	}
	printJSON(out)
	return rc
}

func printJSON(v any) {
	enc := json.NewEncoder(os.Stdout)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

// ---------------------------------------------------------------- single exchange

type immediateJSON struct {
	Status  int               `json:"status"`
	Body    string            `json:"body"`
	Headers map[string]string `json:"headers"`
	Details string            `json:"details,omitempty"`
}

type result struct {
	Mode                string            `json:"mode"`
	Order               []string          `json:"order"`
	SetHeaders          map[string]string `json:"set_headers"`
	RemoveHeaders       []string          `json:"remove_headers"`
	ClearRouteCache     bool              `json:"clear_route_cache"`
	DynamicMetadata     map[string]any    `json:"dynamic_metadata"`
	BodyChunks          []int             `json:"body_chunks"`
	BodyEOS             bool              `json:"body_eos"`
	BodyEqual           bool              `json:"body_equal"`
	BodyMutationHeaders map[string]string `json:"body_mutation_headers"`
	Immediate           *immediateJSON    `json:"immediate"`
	ResponseSetHeaders  map[string]string `json:"response_set_headers"`
	ResponseBodies      []string          `json:"response_bodies"`
	ResponseEOS         bool              `json:"response_eos"`
	ResponseEqual       bool              `json:"response_equal"`
	SentBodyBytes       int               `json:"sent_body_bytes"`
	SentChunks          int               `json:"sent_chunks"`
	Violations          []string          `json:"violations"`
	GrpcCode            string            `json:"grpc_code"`
	GrpcMessage         string            `json:"grpc_message"`
	ElapsedUs           int64             `json:"elapsed_us"`
	Error               string            `json:"error"`
}

// exchange is the state shared by the sending (main) goroutine and the
// receiving goroutine.
type exchange struct {
	o      *options
	mu     sync.Mutex
	notify chan struct{}
	res    result
	t0     time.Time

	gotReqHeaders    bool
	gotReqBody       bool // buffered: the body reply; full: any body reply
	reqBodyEOS       bool
	gotReqTrailers   bool
	immediate        bool
	respHeadersSent  bool
	gotRespHeaders   bool
	respBodyEOS      bool
	respUnchanged    bool
	bodyUnchanged    bool
	done             bool
	final            error
	bodyReplies      bytes.Buffer
	respEcho         bytes.Buffer
	respSentBytes    int
	sentReqBody      bool
	sentRespBodyDone bool
}

func (e *exchange) violate(format string, a ...any) {
	e.res.Violations = append(e.res.Violations, fmt.Sprintf(format, a...))
}

func headerValue(h *corev3.HeaderValue) string {
	if len(h.GetRawValue()) > 0 {
		return string(h.GetRawValue())
	}
	return h.GetValue()
}

func mutationHeaders(dst map[string]string, m *extprocv3.HeaderMutation) {
	for _, o := range m.GetSetHeaders() {
		dst[o.GetHeader().GetKey()] = headerValue(o.GetHeader())
	}
}

func (e *exchange) since(now time.Time) int64 { return now.Sub(e.t0).Microseconds() }

// handle records one ProcessingResponse; called with e.mu held.
func (e *exchange) handle(m *extprocv3.ProcessingResponse, now time.Time) {
	r := &e.res
	full := e.o.mode == "full"
	if e.immediate {
		e.violate("reply after immediate_response")
	}
	switch x := m.GetResponse().(type) {
	case *extprocv3.ProcessingResponse_RequestHeaders:
		r.Order = append(r.Order, "request_headers")
		if e.gotReqHeaders {
			e.violate("duplicate request_headers reply")
		}
		e.gotReqHeaders = true
		if full && r.ElapsedUs < 0 {
			r.ElapsedUs = e.since(now)
		}
		cr := x.RequestHeaders.GetResponse()
		mutationHeaders(r.SetHeaders, cr.GetHeaderMutation())
		r.RemoveHeaders = append(r.RemoveHeaders, cr.GetHeaderMutation().GetRemoveHeaders()...)
		r.ClearRouteCache = r.ClearRouteCache || cr.GetClearRouteCache()
		if cr.GetBodyMutation() != nil {
			e.violate("body_mutation in the request_headers reply")
		}
	case *extprocv3.ProcessingResponse_RequestBody:
		r.Order = append(r.Order, "request_body")
		if !e.gotReqHeaders {
			e.violate("request_body reply before the request_headers reply")
		}
		if e.reqBodyEOS {
			e.violate("request_body reply after end_of_stream")
		}
		if !e.sentReqBody {
			e.violate("request_body reply but no request_body was sent")
		}
		e.gotReqBody = true
		cr := x.RequestBody.GetResponse()
		r.ClearRouteCache = r.ClearRouteCache || cr.GetClearRouteCache()
		bm := cr.GetBodyMutation()
		if full {
			if len(cr.GetHeaderMutation().GetSetHeaders()) > 0 || len(cr.GetHeaderMutation().GetRemoveHeaders()) > 0 {
				e.violate("header mutation in a full-duplex request_body reply (ignored by Envoy)")
			}
			sr := bm.GetStreamedResponse()
			if sr == nil {
				e.violate("full-duplex request_body reply without streamed_response")
			}
			if len(sr.GetBody()) > maxStreamChunk {
				e.violate("request_body reply of %d bytes > %d", len(sr.GetBody()), maxStreamChunk)
			}
			r.BodyChunks = append(r.BodyChunks, len(sr.GetBody()))
			e.bodyReplies.Write(sr.GetBody())
			r.BodyEOS = sr.GetEndOfStream()
			if r.BodyEOS {
				e.reqBodyEOS = true
			}
		} else {
			if r.ElapsedUs < 0 {
				r.ElapsedUs = e.since(now)
			}
			mutationHeaders(r.BodyMutationHeaders, cr.GetHeaderMutation())
			r.RemoveHeaders = append(r.RemoveHeaders, cr.GetHeaderMutation().GetRemoveHeaders()...)
			switch mm := bm.GetMutation().(type) {
			case *extprocv3.BodyMutation_Body:
				r.BodyChunks = append(r.BodyChunks, len(mm.Body))
				e.bodyReplies.Write(mm.Body)
			case *extprocv3.BodyMutation_ClearBody:
				r.BodyChunks = append(r.BodyChunks, 0)
			case *extprocv3.BodyMutation_StreamedResponse:
				e.violate("streamed_response in a BUFFERED request_body reply")
				r.BodyChunks = append(r.BodyChunks, len(mm.StreamedResponse.GetBody()))
				e.bodyReplies.Write(mm.StreamedResponse.GetBody())
			default:
				e.bodyUnchanged = true // Envoy forwards the original body
			}
			r.BodyEOS = true
			e.reqBodyEOS = true
		}
	case *extprocv3.ProcessingResponse_RequestTrailers:
		r.Order = append(r.Order, "request_trailers")
		if !e.gotReqHeaders {
			e.violate("request_trailers reply before the request_headers reply")
		}
		e.gotReqTrailers = true
	case *extprocv3.ProcessingResponse_ResponseHeaders:
		r.Order = append(r.Order, "response_headers")
		if !e.respHeadersSent {
			e.violate("response_headers reply but no response_headers was sent")
		}
		e.gotRespHeaders = true
		mutationHeaders(r.ResponseSetHeaders, x.ResponseHeaders.GetResponse().GetHeaderMutation())
	case *extprocv3.ProcessingResponse_ResponseBody:
		r.Order = append(r.Order, "response_body")
		if !e.gotRespHeaders {
			e.violate("response_body reply before the response_headers reply")
		}
		if e.respBodyEOS {
			e.violate("response_body reply after end_of_stream")
		}
		bm := x.ResponseBody.GetResponse().GetBodyMutation()
		switch mm := bm.GetMutation().(type) {
		case *extprocv3.BodyMutation_StreamedResponse:
			if !full {
				e.violate("streamed_response in a BUFFERED response_body reply")
			}
			if len(mm.StreamedResponse.GetBody()) > maxStreamChunk {
				e.violate("response_body reply of %d bytes > %d", len(mm.StreamedResponse.GetBody()), maxStreamChunk)
			}
			r.ResponseBodies = append(r.ResponseBodies, string(mm.StreamedResponse.GetBody()))
			e.respEcho.Write(mm.StreamedResponse.GetBody())
			r.ResponseEOS = mm.StreamedResponse.GetEndOfStream()
		case *extprocv3.BodyMutation_Body:
			if full {
				e.violate("body (not streamed_response) in a full-duplex response_body reply")
			}
			r.ResponseBodies = append(r.ResponseBodies, string(mm.Body))
			e.respEcho.Write(mm.Body)
			r.ResponseEOS = !full
		default:
			if full {
				e.violate("full-duplex response_body reply without streamed_response")
			} else {
				e.respUnchanged = true
				r.ResponseEOS = true
			}
		}
		if r.ResponseEOS {
			e.respBodyEOS = true
		}
	case *extprocv3.ProcessingResponse_ResponseTrailers:
		r.Order = append(r.Order, "response_trailers")
	case *extprocv3.ProcessingResponse_ImmediateResponse:
		r.Order = append(r.Order, "immediate_response")
		ir := x.ImmediateResponse
		im := &immediateJSON{Status: int(ir.GetStatus().GetCode()), Body: string(ir.GetBody()), Headers: map[string]string{}, Details: ir.GetDetails()}
		mutationHeaders(im.Headers, ir.GetHeaders())
		r.Immediate = im
		e.immediate = true
		if r.ElapsedUs < 0 {
			r.ElapsedUs = e.since(now)
		}
	case *extprocv3.ProcessingResponse_StreamedImmediateResponse:
		r.Order = append(r.Order, "streamed_immediate_response")
	default:
		r.Order = append(r.Order, "empty")
		e.violate("ProcessingResponse without a response")
	}
	if dm := m.GetDynamicMetadata(); dm != nil {
		for k, v := range dm.AsMap() {
			r.DynamicMetadata[k] = v
		}
	}
}

func (e *exchange) receive(stream extprocv3.ExternalProcessor_ProcessClient) {
	for {
		m, err := stream.Recv()
		now := time.Now()
		e.mu.Lock()
		if err != nil {
			e.done, e.final = true, err
		} else {
			e.handle(m, now)
		}
		e.mu.Unlock()
		select {
		case e.notify <- struct{}{}:
		default:
		}
		if err != nil {
			return
		}
	}
}

// waitFor blocks until cond (called with e.mu held) is true or the stream has
// ended; it returns cond's value.
func (e *exchange) waitFor(cond func() bool) bool {
	for {
		e.mu.Lock()
		ok, done := cond(), e.done
		e.mu.Unlock()
		if ok || done {
			return ok
		}
		<-e.notify
	}
}

func (e *exchange) ended() bool { return e.done || e.immediate }

func runSingle(o *options, body []byte) int {
	kv, err := requestHeaders(o, body)
	if err != nil {
		return usage("%v", err)
	}
	conn, err := dial(o)
	if err != nil {
		fmt.Fprintf(os.Stderr, "extproc-client: %v\n", err)
		return 1
	}
	defer conn.Close()

	e := &exchange{o: o, notify: make(chan struct{}, 1)}
	r := &e.res
	r.Mode = o.mode
	r.Order, r.RemoveHeaders, r.BodyChunks, r.ResponseBodies, r.Violations = []string{}, []string{}, []int{}, []string{}, []string{}
	r.SetHeaders, r.BodyMutationHeaders, r.ResponseSetHeaders = map[string]string{}, map[string]string{}, map[string]string{}
	r.DynamicMetadata = map[string]any{}
	r.ElapsedUs = -1

	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()
	stream, err := extprocv3.NewExternalProcessorClient(conn).Process(ctx)
	if err != nil {
		st := status.Convert(err)
		r.GrpcCode, r.GrpcMessage, r.Error = st.Code().String(), st.Message(), st.Message()
		printJSON(r)
		fmt.Fprintf(os.Stderr, "extproc-client: %v\n", err)
		return 1
	}

	var sendErr error
	first := true
	meta := metadataContext(o)
	send := func(req *extprocv3.ProcessingRequest, reqPhase bool) bool {
		if sendErr != nil {
			return false
		}
		if first {
			if !o.noProtoConfig {
				req.ProtocolConfig = protocolConfig(o)
			}
			req.MetadataContext = meta
			e.mu.Lock()
			e.t0 = time.Now()
			e.mu.Unlock()
			go e.receive(stream)
		} else if o.metaEvery && reqPhase {
			req.MetadataContext = meta
		}
		first = false
		if err := stream.Send(req); err != nil {
			sendErr = err // io.EOF: the server ended the stream; Recv has the status
			return false
		}
		return true
	}
	weCancelled := false
	doCancel := func() {
		if o.cancelDelay > 0 {
			time.Sleep(o.cancelDelay)
		}
		weCancelled = true
		cancel()
	}
	sendBodyChunk := func(b []byte, eos bool) bool {
		e.mu.Lock()
		e.sentReqBody = true
		e.mu.Unlock()
		if !send(reqBodyMsg(b, eos), true) {
			return false
		}
		r.SentChunks++
		r.SentBodyBytes += len(b)
		return true
	}
	waiting := "request_headers reply"

	func() {
		if !send(reqHeadersMsg(kv, o.noBody), true) {
			return
		}
		if o.cancelAfter == 0 {
			doCancel()
			return
		}
		if o.mode == "full" {
			if !o.noBody {
				cs := chunks(body, o.chunk)
				for i, c := range cs {
					last := i == len(cs)-1
					if !sendBodyChunk(c, last && !(o.trailers && o.trailersNoEOS)) {
						return
					}
					if r.SentChunks == o.cancelAfter {
						doCancel()
						return
					}
					e.mu.Lock()
					stop := e.ended()
					e.mu.Unlock()
					if stop {
						break
					}
				}
				if o.trailers {
					e.mu.Lock()
					stop := e.ended()
					e.mu.Unlock()
					if !stop && !send(reqTrailersMsg(), true) {
						return
					}
				}
			}
			if o.earlyClose {
				_ = stream.CloseSend()
			}
			waiting = "the request-phase replies"
			e.waitFor(func() bool {
				if e.immediate {
					return true
				}
				if o.noBody {
					return e.gotReqHeaders
				}
				bodyDone := e.reqBodyEOS || (o.trailers && o.trailersNoEOS && e.gotReqTrailers)
				return e.gotReqHeaders && bodyDone && (!o.trailers || e.gotReqTrailers)
			})
		} else {
			if o.earlyClose && o.noBody {
				_ = stream.CloseSend()
			}
			if !e.waitFor(func() bool { return e.gotReqHeaders || e.immediate }) || e.immediate || o.noBody {
				return
			}
			waiting = "request_body reply"
			if !sendBodyChunk(body, !(o.trailers && o.trailersNoEOS)) {
				return
			}
			if r.SentChunks == o.cancelAfter {
				doCancel()
				return
			}
			if o.trailers && !send(reqTrailersMsg(), true) {
				return
			}
			if o.earlyClose {
				_ = stream.CloseSend()
			}
			e.waitFor(func() bool {
				return e.immediate || ((e.reqBodyEOS || o.trailersNoEOS) && (!o.trailers || e.gotReqTrailers))
			})
		}
	}()

	// Response phase.
	e.mu.Lock()
	doResp := o.respStatus > 0 && !weCancelled && e.gotReqHeaders && !e.ended() && sendErr == nil && !o.earlyClose
	e.mu.Unlock()
	if doResp {
		func() {
			ct := "application/json"
			if o.respSSE {
				ct = "text/event-stream"
			}
			rb := responseBody(o)
			rh := [][2]string{{":status", strconv.Itoa(o.respStatus)}, {"content-type", ct}}
			if !o.respSSE {
				rh = append(rh, [2]string{"content-length", strconv.Itoa(len(bytes.Join(rb, nil)))})
			}
			e.mu.Lock()
			e.respHeadersSent = true
			e.mu.Unlock()
			waiting = "response_headers reply"
			rhm := respHeadersMsg(rh)
			rhm.MetadataContext = respLBMetadata(o)
			if !send(rhm, false) {
				return
			}
			var all []byte
			if o.mode == "full" {
				waiting = "response_body replies"
				for i, c := range rb {
					all = append(all, c...)
					if !send(respBodyMsg(c, i == len(rb)-1), false) {
						return
					}
					if o.respLockstep {
						n := len(all)
						e.waitFor(func() bool { return e.immediate || e.respEcho.Len() >= n })
					}
				}
			} else {
				if !e.waitFor(func() bool { return e.gotRespHeaders || e.immediate }) || e.immediate {
					return
				}
				waiting = "response_body reply"
				all = bytes.Join(rb, nil)
				if !send(respBodyMsg(all, true), false) {
					return
				}
			}
			e.waitFor(func() bool { return e.respBodyEOS || e.immediate })
			e.mu.Lock()
			r.ResponseEqual = bytes.Equal(e.respEcho.Bytes(), all) || (e.respUnchanged && e.respEcho.Len() == 0)
			e.mu.Unlock()
		}()
	}

	// Half-close and read until the server ends the stream.
	if !weCancelled {
		_ = stream.CloseSend()
		e.mu.Lock()
		if !e.done {
			waiting = "the end of the stream (after half-close)"
		}
		e.mu.Unlock()
	}
	e.waitFor(func() bool { return false })

	e.mu.Lock()
	defer e.mu.Unlock()
	r.BodyEqual = bytes.Equal(e.bodyReplies.Bytes(), body) || (e.bodyUnchanged && e.bodyReplies.Len() == 0)
	final := e.final
	if errors.Is(final, io.EOF) {
		final = nil
	}
	st := status.Convert(final)
	r.GrpcCode, r.GrpcMessage = st.Code().String(), st.Message()
	rc := 0
	if sendErr != nil && !errors.Is(sendErr, io.EOF) && st.Code() == codes.OK {
		r.Error = "send: " + sendErr.Error()
		rc = 1
	}
	if transportFailure(st, weCancelled) {
		if st.Code() == codes.DeadlineExceeded {
			r.Error = fmt.Sprintf("timeout after %v waiting for %s", o.timeout, waiting)
		} else {
			r.Error = st.Message()
		}
		rc = 1
	}
	printJSON(r)
	if rc != 0 {
		fmt.Fprintf(os.Stderr, "extproc-client: %s (grpc %s)\n", r.Error, r.GrpcCode)
	}
	return rc
}

// ---------------------------------------------------------------- bench

// rawMsg is a pre-encoded ProcessingRequest; benchResp is a lazily decoded
// ProcessingResponse. rawCodec moves them without copies or reflection.
type rawMsg struct{ b []byte }

type benchResp struct {
	kind     protowire.Number // ProcessingResponse oneof field number
	eos      bool             // request_body streamed_response end_of_stream
	bodyLen  int              // request_body streamed_response body size
	immCode  int
	hasSet   bool
	decodeOK bool
}

type rawCodec struct{}

func (rawCodec) Name() string { return "proto" }

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	if m, ok := v.(*rawMsg); ok {
		return mem.BufferSlice{mem.SliceBuffer(m.b)}, nil
	}
	b, err := proto.Marshal(v.(proto.Message))
	return mem.BufferSlice{mem.SliceBuffer(b)}, err
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	r := v.(*benchResp)
	if len(data) == 1 {
		r.parse(data[0].ReadOnlyData())
	} else {
		r.parse(data.Materialize())
	}
	if !r.decodeOK {
		return errors.New("cannot decode ProcessingResponse")
	}
	return nil
}

// field returns the last occurrence of a length-delimited field num in b.
func field(b []byte, num protowire.Number) ([]byte, bool) {
	var out []byte
	found := false
	for len(b) > 0 {
		n, t, l := protowire.ConsumeTag(b)
		if l < 0 {
			return nil, false
		}
		b = b[l:]
		if n == num && t == protowire.BytesType {
			v, l2 := protowire.ConsumeBytes(b)
			if l2 < 0 {
				return nil, false
			}
			out, found = v, true
			b = b[l2:]
			continue
		}
		l2 := protowire.ConsumeFieldValue(n, t, b)
		if l2 < 0 {
			return nil, false
		}
		b = b[l2:]
	}
	return out, found
}

func varintField(b []byte, num protowire.Number) uint64 {
	var out uint64
	for len(b) > 0 {
		n, t, l := protowire.ConsumeTag(b)
		if l < 0 {
			return out
		}
		b = b[l:]
		if n == num && t == protowire.VarintType {
			v, l2 := protowire.ConsumeVarint(b)
			if l2 < 0 {
				return out
			}
			out = v
			b = b[l2:]
			continue
		}
		l2 := protowire.ConsumeFieldValue(n, t, b)
		if l2 < 0 {
			return out
		}
		b = b[l2:]
	}
	return out
}

func (r *benchResp) parse(b []byte) {
	*r = benchResp{decodeOK: true}
	for _, k := range []protowire.Number{1, 3, 7, 2, 4, 5, 6} {
		sub, ok := field(b, k)
		if !ok {
			continue
		}
		r.kind = k
		switch k {
		case 1: // request_headers: HeadersResponse.response.header_mutation.set_headers
			cr, _ := field(sub, 1)
			hm, _ := field(cr, 2)
			_, r.hasSet = field(hm, 1)
		case 3: // request_body: .response.body_mutation.streamed_response
			cr, _ := field(sub, 1)
			bm, _ := field(cr, 3)
			sr, ok := field(bm, 3)
			if ok {
				body, _ := field(sr, 1)
				r.bodyLen = len(body)
				r.eos = varintField(sr, 2) != 0
			}
		case 7: // immediate_response.status.code
			st, _ := field(sub, 1)
			r.immCode = int(varintField(st, 1))
		}
		return
	}
}

type benchOut struct {
	N           int     `json:"n"`
	OK          int64   `json:"ok"`
	Errors      int64   `json:"errors"`
	Immediate   int64   `json:"immediate"`
	Seconds     float64 `json:"seconds"`
	Rate        float64 `json:"rate"`
	P50Us       float64 `json:"p50_us"`
	P90Us       float64 `json:"p90_us"`
	P99Us       float64 `json:"p99_us"`
	MaxUs       float64 `json:"max_us"`
	MeanUs      float64 `json:"mean_us"`
	Concurrency int     `json:"concurrency"`
	Conns       int     `json:"conns"`
	BodySize    int     `json:"body_size"`
	Chunks      int     `json:"chunks"`
	FirstError  string  `json:"first_error"`
}

type benchVariant struct {
	hdr    *rawMsg
	chunks []*rawMsg
	size   int
}

func encodeRaw(m proto.Message) *rawMsg {
	b, err := proto.Marshal(m)
	if err != nil {
		panic(err)
	}
	return &rawMsg{b: b}
}

func runBench(o *options, body0 []byte) int {
	o.mode = "full"
	debug.SetGCPercent(400) // fewer GC cycles: the client should not be the bottleneck
	variants := make([]benchVariant, o.variants)
	for i := range variants {
		body := body0
		if i > 0 {
			if o.bodySize < 0 {
				return usage("-variants needs -body-size")
			}
			body = genBody(o.model, o.bodySize, o.seed+int64(i))
		}
		kv, err := requestHeaders(o, body)
		if err != nil {
			return usage("%v", err)
		}
		h := reqHeadersMsg(kv, o.noBody)
		if !o.noProtoConfig {
			h.ProtocolConfig = protocolConfig(o)
		}
		h.MetadataContext = metadataContext(o)
		v := benchVariant{hdr: encodeRaw(h), size: len(body)}
		if !o.noBody {
			cs := chunks(body, o.chunk)
			for j, c := range cs {
				v.chunks = append(v.chunks, encodeRaw(reqBodyMsg(c, j == len(cs)-1)))
			}
		}
		variants[i] = v
	}

	conns := make([]*grpc.ClientConn, o.conns)
	for i := range conns {
		c, err := dial(o)
		if err != nil {
			fmt.Fprintf(os.Stderr, "extproc-client: %v\n", err)
			return 1
		}
		defer c.Close()
		conns[i] = c
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()
	desc := &grpc.StreamDesc{StreamName: "Process", ServerStreams: true, ClientStreams: true}
	callOpts := []grpc.CallOption{grpc.ForceCodecV2(rawCodec{})}

	total := int64(o.warmup + o.bench)
	var next, nOK, nErr, nImm atomic.Int64
	var firstErr atomic.Value
	var timedStart, endNs atomic.Int64 // unix ns: first timed exchange began, last one ended
	lats := make([][]int64, o.concurrency)
	const (
		outOK = iota
		outImm
		outErr
	)

	// exch runs one exchange and returns the latency in ns (headers sent ->
	// request_headers reply) and its outcome.
	exch := func(conn *grpc.ClientConn, v *benchVariant) (int64, int, error) {
		cs, err := conn.NewStream(ctx, desc, processMethod, callOpts...)
		if err != nil {
			return -1, outErr, err
		}
		t0 := time.Now()
		if err := cs.SendMsg(v.hdr); err == nil {
			for _, c := range v.chunks {
				if cs.SendMsg(c) != nil {
					break // io.EOF: the server ended the stream; RecvMsg has the status
				}
			}
		}
		var lat int64 = -1
		var r benchResp
		gotHdr, eos, imm := false, o.noBody, false
		bodyBytes := 0
		for !(gotHdr && eos) && !imm {
			if err := cs.RecvMsg(&r); err != nil {
				if err == io.EOF {
					err = errors.New("stream ended before the decision was complete")
				}
				return -1, outErr, err
			}
			switch r.kind {
			case 1:
				if lat < 0 {
					lat = time.Since(t0).Nanoseconds()
				}
				gotHdr = true
			case 3:
				if !gotHdr {
					return -1, outErr, errors.New("request_body reply before the request_headers reply")
				}
				bodyBytes += r.bodyLen
				eos = eos || r.eos
			case 7:
				imm = true
			}
		}
		_ = cs.CloseSend()
		for {
			if err := cs.RecvMsg(&r); err != nil {
				if err != io.EOF {
					return -1, outErr, err
				}
				break
			}
		}
		if imm {
			return -1, outImm, nil
		}
		if !o.noBody && bodyBytes != v.size {
			return -1, outErr, fmt.Errorf("body re-streamed as %d bytes, sent %d", bodyBytes, v.size)
		}
		return lat, outOK, nil
	}

	if o.cpuProfile != "" {
		f, err := os.Create(o.cpuProfile)
		if err != nil {
			return usage("%v", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return usage("%v", err)
		}
		defer pprof.StopCPUProfile()
	}
	var wg sync.WaitGroup
	for w := 0; w < o.concurrency; w++ {
		lats[w] = make([]int64, 0, o.bench/o.concurrency+1)
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			conn := conns[w%len(conns)]
			for {
				i := next.Add(1) - 1
				if i >= total {
					return
				}
				timed := i >= int64(o.warmup)
				if i == int64(o.warmup) {
					timedStart.Store(time.Now().UnixNano())
				}
				lat, res, err := exch(conn, &variants[int(i)%len(variants)])
				if err != nil {
					firstErr.CompareAndSwap(nil, err.Error())
				}
				if !timed {
					continue
				}
				switch res {
				case outOK:
					nOK.Add(1)
					lats[w] = append(lats[w], lat)
				case outImm:
					nImm.Add(1)
				default:
					nErr.Add(1)
				}
				endNs.Store(time.Now().UnixNano())
			}
		}(w)
	}
	wg.Wait()
	ts, end := timedStart.Load(), endNs.Load()
	var all []int64
	for _, l := range lats {
		all = append(all, l...)
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	out := benchOut{N: o.bench, Concurrency: o.concurrency, Conns: o.conns, BodySize: variants[0].size, Chunks: len(variants[0].chunks)}
	out.OK, out.Errors, out.Immediate = nOK.Load(), nErr.Load(), nImm.Load()
	out.Seconds = float64(end-ts) / 1e9
	if out.Seconds > 0 {
		out.Rate = round1(float64(out.OK) / out.Seconds)
	}
	out.Seconds = math.Round(out.Seconds*1e6) / 1e6
	pct := func(p float64) float64 {
		if len(all) == 0 {
			return 0
		}
		i := int(math.Ceil(p*float64(len(all)))) - 1
		if i < 0 {
			i = 0
		}
		return round1(float64(all[i]) / 1e3)
	}
	out.P50Us, out.P90Us, out.P99Us, out.MaxUs = pct(0.50), pct(0.90), pct(0.99), pct(1)
	if len(all) > 0 {
		var s int64
		for _, l := range all {
			s += l
		}
		out.MeanUs = round1(float64(s) / float64(len(all)) / 1e3)
	}
	if v, ok := firstErr.Load().(string); ok {
		out.FirstError = v
	}
	printJSON(out)
	if out.OK == 0 {
		fmt.Fprintf(os.Stderr, "extproc-client: no exchange succeeded: %s\n", out.FirstError)
		return 1
	}
	return 0
}

func round1(f float64) float64 { return math.Round(f*10) / 10 }
