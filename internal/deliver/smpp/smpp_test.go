package smpp

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/linxGnu/gosmpp/data"
	"github.com/linxGnu/gosmpp/pdu"

	"github.com/otpd/otpd/internal/deliver"
	"github.com/otpd/otpd/internal/store"
	"github.com/otpd/otpd/internal/testsmsc"
)

// receipts collects what the sender hands to its receipt handler.
type receipts struct {
	mu   sync.Mutex
	got  []deliver.Receipt
	wake chan struct{}
}

func (r *receipts) handle(_ context.Context, rc deliver.Receipt) {
	r.mu.Lock()
	r.got = append(r.got, rc)
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

func (r *receipts) wait(t *testing.T, id string) deliver.Receipt {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		r.mu.Lock()
		for _, rc := range r.got {
			if rc.ProviderMessageID == id {
				r.mu.Unlock()
				return rc
			}
		}
		r.mu.Unlock()
		select {
		case <-r.wake:
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			t.Fatalf("no receipt for %s", id)
		}
	}
}

func newSender(t *testing.T, smsc *testsmsc.Server, settings string, password string) (*Sender, *receipts) {
	t.Helper()
	rc := &receipts{wake: make(chan struct{}, 1)}
	if settings == "" {
		settings = `{}`
	}
	var extra map[string]any
	if err := json.Unmarshal([]byte(settings), &extra); err != nil {
		t.Fatal(err)
	}
	st := map[string]any{"addr": smsc.Addr(), "system_id": "otpd", "source_addr": "OTPD", "submit_timeout": "2s", "rebind": "100ms"}
	for k, v := range extra {
		st[k] = v
	}
	raw, _ := json.Marshal(st)
	s, err := New(deliver.ProviderConfig{ID: "smsc-1", Type: Type, Channels: []string{"sms"}, Settings: raw,
		Secrets: map[string]string{"password": password}, OnReceipt: rc.handle})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, rc
}

func message(to, text string) deliver.Message {
	return deliver.Message{ID: "m-" + to, Channel: "sms", To: to, Content: deliver.Content{Text: text}}
}

func TestSubmitAndReceipt(t *testing.T) {
	smsc := testsmsc.Start(t, testsmsc.Options{})
	s, rc := newSender(t, smsc, "", "secret")
	if !s.ReportsReceipts() || s.Name() != "smsc-1" {
		t.Error("name or receipts")
	}
	id, err := s.Send(context.Background(), message("+4915112345678", "Your verification code is 482913."))
	if err != nil {
		t.Fatal(err)
	}
	got := smsc.WaitFor(t, "4915112345678", 5*time.Second)
	if got.ID != id || got.Text != "Your verification code is 482913." || got.From != "OTPD" || got.Parts != 1 ||
		got.DataCoding != data.GSM7BITCoding || got.RegisteredDelivery != 1 {
		t.Errorf("the SMSC got %+v (id %q)", got, id)
	}
	if r := rc.wait(t, id); r.Status != store.MsgDelivered {
		t.Errorf("receipt %+v", r)
	}
	// A message's own sender, numeric: TON 1, no plus.
	m := message("+4915112345679", "x")
	m.Sender = "+4930123456"
	if _, err := s.Send(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	if got := smsc.WaitFor(t, "4915112345679", 5*time.Second); got.From != "4930123456" {
		t.Errorf("from = %q", got.From)
	}
	if smsc.Binds() != 1 {
		t.Errorf("%d binds for two sends, want one bind reused", smsc.Binds())
	}
}

func TestUnicodeAndLongMessages(t *testing.T) {
	smsc := testsmsc.Start(t, testsmsc.Options{ReceiptStat: "UNDELIV"})
	s, rc := newSender(t, smsc, "", "secret")
	greek := "Ο κωδικός σας είναι 482913"
	if _, err := s.Send(context.Background(), message("+306912345678", greek)); err != nil {
		t.Fatal(err)
	}
	if got := smsc.WaitFor(t, "306912345678", 5*time.Second); got.Text != greek || got.DataCoding != data.UCS2Coding {
		t.Errorf("UCS-2: %+v", got)
	}
	long := strings.Repeat("Your verification code is 482913. ", 12) // 408 characters
	id, err := s.Send(context.Background(), message("+15550100001", long))
	if err != nil {
		t.Fatal(err)
	}
	got := smsc.WaitFor(t, "15550100001", 5*time.Second)
	if got.Text != long || got.Parts < 3 || got.ID != id || len(got.PartIDs) != got.Parts {
		t.Errorf("long message: %d parts, text ok %v, id %q vs %q", got.Parts, got.Text == long, got.ID, id)
	}
	if r := rc.wait(t, id); r.Status != store.MsgUndelivered {
		t.Errorf("receipt %+v", r)
	}
	longGreek := strings.Repeat(greek+" ", 6)
	if _, err := s.Send(context.Background(), message("+306912345670", longGreek)); err != nil {
		t.Fatal(err)
	}
	if got := smsc.WaitFor(t, "306912345670", 5*time.Second); got.Text != longGreek || got.Parts < 2 {
		t.Errorf("long UCS-2: %d parts, %q", got.Parts, got.Text)
	}
}

func TestSubmitFailures(t *testing.T) {
	statuses := map[int]data.CommandStatusType{1: data.ESME_RTHROTTLED, 2: data.ESME_RINVDSTADR}
	smsc := testsmsc.Start(t, testsmsc.Options{
		Fail: func(n int) data.CommandStatusType { return statuses[n] },
		Hang: func(n int) bool { return n == 3 },
	})
	s, _ := newSender(t, smsc, `{"submit_timeout": "300ms"}`, "secret")
	ctx := context.Background()
	_, err := s.Send(ctx, message("+15550100001", "code 482913"))
	if err == nil || deliver.IsPermanent(err) || !strings.Contains(err.Error(), "ESME_RTHROTTLED") {
		t.Errorf("throttled: %v", err)
	}
	_, err = s.Send(ctx, message("+15550100001", "code 482913"))
	if err == nil || !deliver.IsPermanent(err) || !strings.Contains(err.Error(), "ESME_RINVDSTADR") {
		t.Errorf("invalid destination: %v", err)
	}
	start := time.Now()
	_, err = s.Send(ctx, message("+15550100001", "code 482913"))
	if err == nil || deliver.IsPermanent(err) || !strings.Contains(err.Error(), "no submit_sm_resp in time") || time.Since(start) > 3*time.Second {
		t.Errorf("unanswered submit: %v after %v", err, time.Since(start))
	}
	if _, err := s.Send(ctx, message("+15550100001", "code 482913")); err != nil {
		t.Errorf("fourth submit: %v", err)
	}
	for _, bad := range []deliver.Message{message("alice@example.com", "x"), {ID: "x", To: "+1555", Sender: "way too long sender", Content: deliver.Content{Text: "x"}}} {
		if _, err := s.Send(ctx, bad); err == nil || !deliver.IsPermanent(err) {
			t.Errorf("%+v: %v", bad, err)
		}
	}
	for _, e := range []string{"482913"} {
		if err != nil && strings.Contains(err.Error(), e) {
			t.Errorf("error leaks the text: %v", err)
		}
	}
}

func TestBindFailureAndRebind(t *testing.T) {
	smsc := testsmsc.Start(t, testsmsc.Options{})
	bad, _ := newSender(t, smsc, "", "wrongpw")
	_, err := bad.Send(context.Background(), message("+15550100001", "x"))
	if err == nil || deliver.IsPermanent(err) || !strings.Contains(err.Error(), "refused the bind") || strings.Contains(err.Error(), "wrongpw") {
		t.Errorf("bad password: %v", err)
	}

	s, _ := newSender(t, smsc, "", "secret")
	if _, err := s.Send(context.Background(), message("+15550100001", "first")); err != nil {
		t.Fatal(err)
	}
	smsc.DropConnections() // the SMSC restarts; gosmpp binds again
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := s.Send(context.Background(), message("+15550100002", "after the drop"))
		if err == nil {
			break
		}
		if deliver.IsPermanent(err) || time.Now().After(deadline) {
			t.Fatalf("no delivery after the connection dropped: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	smsc.WaitFor(t, "15550100002", 5*time.Second)
	if smsc.Binds() < 2 {
		t.Errorf("binds = %d, want a second bind", smsc.Binds())
	}
}

func TestConcurrentSends(t *testing.T) {
	smsc := testsmsc.Start(t, testsmsc.Options{NoReceipts: true})
	s, _ := newSender(t, smsc, `{"registered_delivery": false}`, "secret")
	if s.ReportsReceipts() {
		t.Error("receipts although registered_delivery is false")
	}
	const n = 30
	ids := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			id, err := s.Send(context.Background(), message(fmt.Sprintf("+155501%05d", i), fmt.Sprintf("code %06d", i)))
			if err != nil {
				t.Errorf("send %d: %v", i, err)
			}
			ids[i] = id
		})
	}
	wg.Wait()
	seen := map[string]bool{}
	for _, id := range ids {
		if id == "" || seen[id] {
			t.Errorf("id %q empty or repeated", id)
		}
		seen[id] = true
	}
	if len(smsc.Messages()) != n || smsc.Submits() != n {
		t.Errorf("SMSC got %d messages in %d submits", len(smsc.Messages()), smsc.Submits())
	}
	for _, m := range smsc.Messages() {
		if m.RegisteredDelivery != 0 {
			t.Errorf("registered delivery asked for: %+v", m)
		}
	}
}

func TestParseReceipt(t *testing.T) {
	mk := func(esm byte, text string, tlv map[pdu.Tag][]byte) *pdu.DeliverSM {
		p := pdu.NewDeliverSM().(*pdu.DeliverSM)
		p.EsmClass = esm
		_ = p.Message.SetMessageWithEncoding(text, data.ASCII)
		for tag, v := range tlv {
			p.RegisterOptionalParam(pdu.Field{Tag: tag, Data: v})
		}
		return p
	}
	for _, tc := range []struct {
		p    *pdu.DeliverSM
		want deliver.Receipt
		ok   bool
	}{
		{mk(0x04, "id:ABC123 sub:001 dlvrd:001 submit date:2611240900 done date:2611240901 stat:DELIVRD err:000 text:Your", nil),
			deliver.Receipt{ProviderMessageID: "ABC123", Status: store.MsgDelivered}, true},
		{mk(0x04, "id:77 sub:001 dlvrd:000 submit date:2611240900 done date:2611240901 stat:UNDELIV err:034 text:", nil),
			deliver.Receipt{ProviderMessageID: "77", Status: store.MsgUndelivered, Error: "034"}, true},
		{mk(0x04, "id:x stat:REJECTD", map[pdu.Tag][]byte{pdu.TagReceiptedMessageID: []byte("tlv-id\x00"), pdu.TagMessageStateOption: {6}}),
			deliver.Receipt{ProviderMessageID: "tlv-id", Status: store.MsgAccepted}, true},
		{mk(0x04, "id:9 stat:EXPIRED", nil), deliver.Receipt{ProviderMessageID: "9", Status: store.MsgUndelivered}, true},
		{mk(0x04, "id:9 stat:UNKNOWN", nil), deliver.Receipt{}, false},
		{mk(0x00, "id:9 stat:DELIVRD", nil), deliver.Receipt{}, false}, // a mobile-originated message
		{mk(0x04, "garbage", nil), deliver.Receipt{}, false},
	} {
		got, ok := parseReceipt(tc.p)
		if ok != tc.ok || got != tc.want {
			t.Errorf("%+v: %+v %v, want %+v %v", tc.p.Message, got, ok, tc.want, tc.ok)
		}
	}
}

func TestSettings(t *testing.T) {
	for _, tc := range []struct{ settings, password, want string }{
		{`{"system_id": "otpd"}`, "pw", "addr must be host:port"},
		{`{"addr": "smsc:2775"}`, "pw", "system_id is required"},
		{`{"addr": "smsc:2775", "system_id": "otpd"}`, "", "password is required"},
		{`{"addr": "smsc:2775", "system_id": "otpd"}`, "123456789", "at most 8"},
		{`{"addr": "smsc:2775", "system_id": "otpd", "source_addr": "Much Too Long Sender"}`, "pw", "source_addr"},
		{`{"addr": "smsc:2775", "system_id": "otpd", "encoding": "utf8"}`, "pw", "encoding must be"},
		{`{"addr": "smsc:2775", "system_id": "otpd", "window": 5}`, "pw", `unknown setting "window"`},
	} {
		_, err := New(deliver.ProviderConfig{ID: "x", Settings: json.RawMessage(tc.settings), Secrets: map[string]string{"password": tc.password}})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.settings, err, tc.want)
		}
	}
	// Building does not connect.
	s, err := New(deliver.ProviderConfig{ID: "x", Settings: json.RawMessage(`{"addr": "127.0.0.1:1", "system_id": "otpd"}`),
		Secrets: map[string]string{"password": "pw"}})
	if err != nil || s.sess != nil {
		t.Errorf("New: %v, session %v", err, s.sess)
	}
	_, err = s.Send(context.Background(), message("+15550100001", "x"))
	if err == nil || deliver.IsPermanent(err) || !strings.Contains(err.Error(), "could not be reached") {
		t.Errorf("unreachable SMSC: %v", err)
	}
}

// An SMSC that accepts the connection and never answers the bind: Send gives up when its
// context ends — also a second Send waiting for the same bind — and the bind itself ends at its
// deadline instead of holding the provider forever.
func TestSilentSMSC(t *testing.T) {
	old := bindTimeout
	bindTimeout = time.Second
	t.Cleanup(func() { bindTimeout = old })
	smsc := testsmsc.Start(t, testsmsc.Options{IgnoreBinds: true})
	s, _ := newSender(t, smsc, "", "secret")

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range errs {
		wg.Go(func() { _, errs[i] = s.Send(ctx, message("+15550100001", "hello")) })
	}
	wg.Wait()
	if took := time.Since(start); took > 700*time.Millisecond {
		t.Errorf("Send took %v with a 200ms context", took)
	}
	for _, err := range errs {
		if err == nil || deliver.IsPermanent(err) || !strings.Contains(err.Error(), "no bind in time") {
			t.Errorf("send to a silent SMSC: %v", err)
		}
	}
	if smsc.Accepted() != 1 {
		t.Errorf("%d connections, want one bind shared by both sends", smsc.Accepted())
	}

	// A patient Send hears the bind fail at its deadline, long before its own.
	ctx2, cancel2 := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel2()
	start = time.Now()
	_, err := s.Send(ctx2, message("+15550100001", "hello"))
	if err == nil || !strings.Contains(err.Error(), "no answer in time") {
		t.Errorf("send after the bind deadline: %v", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("the bind was not bounded: %v", took)
	}
	if !smsc.WaitUntil(func() bool { return smsc.Open() == 0 }, 5*time.Second) {
		t.Errorf("%d connections still open after the bind timed out", smsc.Open())
	}
	if smsc.Submits() != 0 {
		t.Errorf("%d submits without a bind", smsc.Submits())
	}
}
