// Package smpp is the SMPP 3.4 delivery provider, on github.com/linxGnu/gosmpp: one transceiver
// bind per provider, opened on the first send and re-bound by gosmpp when the connection drops;
// submit_sm with registered delivery; texts that GSM 03.38 cannot carry go as UCS-2; long texts
// are split into concatenated parts (UDH). The SMSC's deliver_sm delivery receipts (the
// receipted_message_id and message_state TLVs, or the "id:… stat:…" text) are answered and
// handed to the receipt handler, which records them as message statuses.
//
// Responses are matched to requests by sequence number here. gosmpp's WindowedRequestTracking is
// not used: in v0.3.1 it multiplies StoreAccessTimeOut, a time.Duration, by time.Millisecond, so
// the natural 1*time.Second becomes a timeout of about 31 years (and 100, meant as nanoseconds,
// silently means 100 ms).
//
// SMPP has no idempotency key: an attempt that is in doubt (the process died after the submit
// left) can reach the handset twice. docs/delivery.md says what is guaranteed.
package smpp

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/linxGnu/gosmpp"
	"github.com/linxGnu/gosmpp/data"
	"github.com/linxGnu/gosmpp/pdu"

	"github.com/otpd/otpd/internal/deliver"
	"github.com/otpd/otpd/internal/store"
)

// Type is the provider type name.
const Type = "smpp"

func init() {
	deliver.RegisterProviderType(deliver.ProviderType{
		Name:     Type,
		Channels: []string{"sms"},
		New:      func(cfg deliver.ProviderConfig) (deliver.Sender, error) { return New(cfg) },
	})
}

// Settings configure an SMPP provider. The secret password is required.
type Settings struct {
	// Addr is the SMSC's host:port.
	Addr       string `json:"addr"`
	SystemID   string `json:"system_id"`
	SystemType string `json:"system_type,omitempty"`
	// TLS connects with TLS (SMPP over TLS, usually port 3550).
	TLS bool `json:"tls,omitempty"`
	// SourceAddr is the default sender: digits (a number, TON 1/NPI 1) or up to 11 letters and
	// digits (alphanumeric, TON 5/NPI 0). A message's own sender wins.
	SourceAddr string `json:"source_addr"`
	// RegisteredDelivery asks for delivery receipts (default true).
	RegisteredDelivery *bool `json:"registered_delivery,omitempty"`
	// Encoding: "auto" (GSM 03.38 when it can carry the text, else UCS-2; default), "gsm7" or
	// "ucs2".
	Encoding string `json:"encoding,omitempty"`
	// EnquireLink is the keep-alive interval (default 30s); ReadTimeout is three of them.
	EnquireLink deliver.Duration `json:"enquire_link,omitempty"`
	// SubmitTimeout bounds the wait for a submit_sm_resp (default 10s).
	SubmitTimeout deliver.Duration `json:"submit_timeout,omitempty"`
	// Rebind is how long to wait before binding again after the connection drops (default 5s).
	Rebind deliver.Duration `json:"rebind,omitempty"`
}

// Sender submits through one SMSC bind.
type Sender struct {
	id        string
	st        Settings
	password  string
	receipts  bool
	timeout   time.Duration
	enquire   time.Duration
	rebind    time.Duration
	onReceipt func(ctx context.Context, r deliver.Receipt)
	log       *slog.Logger
	restrict  bool // a tenant's provider: public addresses only

	mu      sync.Mutex
	sess    *gosmpp.Session
	binding *bindAttempt // the bind in progress, if any
	closed  bool
	pmu     sync.Mutex
	pending map[int32]chan submitResult
}

type submitResult struct {
	id     string
	status data.CommandStatusType
	nack   bool
}

var alnumRE = regexp.MustCompile(`^[A-Za-z0-9 ._-]{1,11}$`)
var numberRE = regexp.MustCompile(`^\+?[0-9]{3,20}$`)

// New builds a Sender without connecting.
func New(cfg deliver.ProviderConfig) (*Sender, error) {
	var st Settings
	if err := deliver.DecodeSettings(cfg.Settings, &st); err != nil {
		return nil, err
	}
	s := &Sender{id: cfg.ID, st: st, password: cfg.Secrets["password"], onReceipt: cfg.OnReceipt,
		log: cfg.Logger, restrict: cfg.RestrictDestinations, pending: map[int32]chan submitResult{}}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	var errs []error
	if host, port, err := net.SplitHostPort(st.Addr); err != nil || host == "" || port == "" {
		errs = append(errs, errors.New("addr must be host:port"))
	}
	if st.SystemID == "" || len(st.SystemID) > 15 {
		errs = append(errs, errors.New("system_id is required (at most 15 characters)"))
	}
	if len(st.SystemType) > 12 {
		errs = append(errs, errors.New("system_type is at most 12 characters"))
	}
	if s.password == "" || len(s.password) > 8 {
		errs = append(errs, errors.New("the secret password is required (SMPP allows at most 8 characters)"))
	}
	if st.SourceAddr != "" && !numberRE.MatchString(st.SourceAddr) && !alnumRE.MatchString(st.SourceAddr) {
		errs = append(errs, errors.New("source_addr must be a number or at most 11 letters and digits"))
	}
	switch st.Encoding {
	case "", "auto", "gsm7", "ucs2":
	default:
		errs = append(errs, errors.New("encoding must be auto, gsm7 or ucs2"))
	}
	s.receipts = st.RegisteredDelivery == nil || *st.RegisteredDelivery
	s.timeout = durationOr(st.SubmitTimeout, 10*time.Second)
	s.enquire = durationOr(st.EnquireLink, 30*time.Second)
	s.rebind = durationOr(st.Rebind, 5*time.Second)
	if s.timeout < 0 || s.enquire < time.Second || s.rebind < 100*time.Millisecond {
		errs = append(errs, errors.New("submit_timeout, enquire_link (≥ 1s) and rebind (≥ 100ms) must be positive"))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return s, nil
}

func durationOr(d deliver.Duration, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return time.Duration(d)
}

// Name is the provider's id.
func (s *Sender) Name() string { return s.id }

// ReportsReceipts is true when delivery receipts are requested.
func (s *Sender) ReportsReceipts() bool { return s.receipts }

// Close unbinds and closes the connection.
func (s *Sender) Close() error {
	s.mu.Lock()
	sess := s.sess
	s.sess, s.closed = nil, true
	s.mu.Unlock()
	s.failPending()
	if sess != nil {
		return sess.Close()
	}
	return nil
}

// bindTimeout bounds one bind: connecting, the TLS handshake and the SMSC's bind_resp. gosmpp
// v0.3.1 reads the bind_resp without a deadline of its own, so an SMSC that accepts the
// connection and never answers would hold the bind (and every Send waiting for it) forever; the
// dialer puts this deadline on the new connection, and gosmpp sets its own read and write
// deadlines once bound. A variable so that tests can shorten it.
var bindTimeout = 10 * time.Second

// bindAttempt is one bind in progress; done is closed when it ended, with err its outcome.
type bindAttempt struct {
	done chan struct{}
	err  error
}

var errClosed = errors.New("smpp: provider closed")

// session returns the bound session, binding on first use. The bind runs on its own (bounded by
// bindTimeout) and no lock is held while it does: callers wait for it only as long as their ctx
// lets them, and concurrent callers share one bind.
func (s *Sender) session(ctx context.Context) (*gosmpp.Session, error) {
	for {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return nil, errClosed
		}
		if s.sess != nil {
			sess := s.sess
			s.mu.Unlock()
			return sess, nil
		}
		b := s.binding
		if b == nil {
			b = &bindAttempt{done: make(chan struct{})}
			s.binding = b
			go s.bind(b)
		}
		s.mu.Unlock()
		select {
		case <-b.done:
			if b.err != nil {
				return nil, b.err
			}
			// Bound: loop to pick the session up (or see that Close came first).
		case <-ctx.Done():
			return nil, errors.New("smpp: no bind in time (the bind goes on in the background)")
		}
	}
}

// bind opens the session for b and publishes it (or closes it again when the Sender was closed
// meanwhile).
func (s *Sender) bind(b *bindAttempt) {
	sess, err := s.newSession()
	s.mu.Lock()
	s.binding = nil
	if err == nil && s.closed {
		err = errClosed
	} else if err == nil {
		s.sess, sess = sess, nil
	}
	b.err = err
	s.mu.Unlock()
	if sess != nil {
		_ = sess.Close() // bound after Close: unbind at once
	}
	close(b.done)
}

func (s *Sender) newSession() (*gosmpp.Session, error) {
	auth := gosmpp.Auth{SMSC: s.st.Addr, SystemID: s.st.SystemID, Password: s.password, SystemType: s.st.SystemType}
	dial := func(addr string) (net.Conn, error) {
		d := deliver.Dialer(bindTimeout, s.restrict)
		var conn net.Conn
		var err error
		if s.st.TLS {
			host, _, _ := net.SplitHostPort(addr)
			conn, err = tls.DialWithDialer(d, "tcp", addr, &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12})
		} else {
			conn, err = d.Dial("tcp", addr)
		}
		if err != nil {
			return nil, err
		}
		// Bounds the bind request and its answer (also of a re-bind after a drop); gosmpp
		// replaces the deadlines with its own read and write timeouts once bound.
		if err := conn.SetDeadline(time.Now().Add(bindTimeout)); err != nil {
			_ = conn.Close()
			return nil, err
		}
		return conn, nil
	}
	sess, err := gosmpp.NewSession(gosmpp.TRXConnector(dial, auth), gosmpp.Settings{
		EnquireLink:  s.enquire,
		ReadTimeout:  3 * s.enquire,
		WriteTimeout: 10 * time.Second,
		OnAllPDU:     s.onPDU,
		OnSubmitError: func(p pdu.PDU, err error) {
			s.log.Warn("smpp: submit failed", "provider", s.id, "err", err)
		},
		OnReceivingError: func(err error) {
			s.log.Warn("smpp: connection lost", "provider", s.id, "err", err)
		},
		OnRebindingError: func(err error) {
			s.log.Warn("smpp: bind again failed", "provider", s.id, "err", bindErr(err))
		},
		OnClosed: func(st gosmpp.State) {
			s.failPending()
			s.log.Info("smpp: connection closed", "provider", s.id, "state", st.String())
		},
	}, s.rebind)
	if err != nil {
		return nil, fmt.Errorf("smpp: bind to %s: %w", s.st.Addr, bindErr(err))
	}
	s.log.Info("smpp: bound", "provider", s.id, "smsc", s.st.Addr)
	return sess, nil
}

// bindErr keeps what helps an operator (the bind status) and drops the rest.
func bindErr(err error) error {
	var be gosmpp.BindError
	if errors.As(err, &be) {
		return fmt.Errorf("the SMSC refused the bind (%s)", be.CommandStatus.Desc())
	}
	if deliver.IsPrivateDestination(err) {
		return errors.New("the SMSC's address is not a public address; tenant providers may not connect there")
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return errors.New("no answer in time")
	}
	if errors.As(err, new(*net.OpError)) {
		return errors.New("the SMSC could not be reached")
	}
	return errors.New("the bind failed")
}

// failPending wakes every waiting submit: its answer will not come on this connection.
func (s *Sender) failPending() {
	s.pmu.Lock()
	defer s.pmu.Unlock()
	for seq, ch := range s.pending {
		close(ch)
		delete(s.pending, seq)
	}
}

// Permanent SMSC answers: the message itself is wrong for this destination.
var permanentStatuses = map[data.CommandStatusType]bool{
	data.ESME_RINVDSTADR: true, data.ESME_RINVMSGLEN: true, data.ESME_RINVDSTTON: true,
	data.ESME_RINVDSTNPI: true, data.ESME_RINVESMCLASS: true,
}

// Send submits m (in several parts when it is long) and returns the first part's message id.
func (s *Sender) Send(ctx context.Context, m deliver.Message) (string, error) {
	parts, err := s.submits(m)
	if err != nil {
		return "", deliver.Permanent(err)
	}
	if err := ctx.Err(); err != nil {
		return "", errors.New("smpp: no time left to send")
	}
	sess, err := s.session(ctx)
	if err != nil {
		return "", err
	}
	firstID := ""
	for i, p := range parts {
		id, err := s.submit(ctx, sess, p)
		if err != nil {
			if len(parts) > 1 {
				err = fmt.Errorf("%w (part %d of %d)", err, i+1, len(parts))
			}
			return "", err
		}
		if i == 0 {
			firstID = id
		}
	}
	return firstID, nil
}

func (s *Sender) submit(ctx context.Context, sess *gosmpp.Session, p *pdu.SubmitSM) (string, error) {
	ch := make(chan submitResult, 1)
	seq := p.GetSequenceNumber()
	s.pmu.Lock()
	s.pending[seq] = ch
	s.pmu.Unlock()
	defer func() {
		s.pmu.Lock()
		delete(s.pending, seq)
		s.pmu.Unlock()
	}()
	trx := sess.Transceiver()
	if trx == nil {
		return "", errors.New("smpp: not bound")
	}
	if err := trx.Submit(p); err != nil {
		return "", errors.New("smpp: the connection is down (binding again)")
	}
	timer := time.NewTimer(s.timeout)
	defer timer.Stop()
	select {
	case res, ok := <-ch:
		switch {
		case !ok:
			return "", errors.New("smpp: the connection closed before the SMSC answered")
		case res.nack:
			return "", fmt.Errorf("smpp: the SMSC did not understand the submit (generic_nack %v)", res.status)
		case res.status != data.ESME_ROK:
			err := fmt.Errorf("smpp: submit_sm refused: %v (%s)", res.status, res.status.Desc())
			if permanentStatuses[res.status] {
				return "", deliver.Permanent(err)
			}
			return "", err
		}
		return deliver.ProviderMessageID(res.id), nil
	case <-timer.C:
		return "", errors.New("smpp: no submit_sm_resp in time")
	case <-ctx.Done():
		return "", errors.New("smpp: no submit_sm_resp in time")
	}
}

// submits builds the submit_sm PDUs of m: one, or the concatenated parts of a long text.
func (s *Sender) submits(m deliver.Message) ([]*pdu.SubmitSM, error) {
	to := strings.TrimPrefix(m.To, "+")
	if !numberRE.MatchString(to) {
		return nil, errors.New("smpp: the recipient is not a phone number")
	}
	from := m.Sender
	if from == "" {
		from = s.st.SourceAddr
	}
	var src pdu.Address
	switch {
	case numberRE.MatchString(from):
		src = pdu.NewAddressWithTonNpi(1, 1)
		from = strings.TrimPrefix(from, "+")
	case alnumRE.MatchString(from):
		src = pdu.NewAddressWithTonNpi(5, 0)
	case from == "":
		src = pdu.NewAddressWithTonNpi(0, 0)
	default:
		return nil, errors.New("smpp: the sender must be a number or at most 11 letters and digits")
	}
	if err := src.SetAddress(from); err != nil {
		return nil, errors.New("smpp: the sender is too long")
	}
	dst := pdu.NewAddressWithTonNpi(1, 1)
	if err := dst.SetAddress(to); err != nil {
		return nil, errors.New("smpp: the recipient is too long")
	}
	enc := data.Encoding(data.GSM7BIT)
	switch s.st.Encoding {
	case "ucs2":
		enc = data.UCS2
	case "gsm7":
		if len(data.ValidateGSM7String(m.Text)) > 0 {
			return nil, errors.New("smpp: the text has characters GSM 03.38 cannot carry (encoding gsm7)")
		}
	default:
		if len(data.ValidateGSM7String(m.Text)) > 0 {
			enc = data.UCS2
		}
	}
	segments, err := pdu.NewLongMessageWithEncoding(m.Text, enc)
	if err != nil {
		return nil, errors.New("smpp: the text cannot be encoded")
	}
	if len(segments) > 255 {
		return nil, errors.New("smpp: the text is too long")
	}
	out := make([]*pdu.SubmitSM, 0, len(segments))
	for i, seg := range segments {
		p := pdu.NewSubmitSM().(*pdu.SubmitSM) // a fresh sequence number for every part
		p.SourceAddr, p.DestAddr = src, dst
		p.Message = *seg
		if len(segments) > 1 {
			p.EsmClass |= data.SM_UDH_GSM
		}
		// One receipt per message: the first part's, whose id Send returns.
		if s.receipts && i == 0 {
			p.RegisteredDelivery = 1
		}
		out = append(out, p)
	}
	return out, nil
}

// onPDU handles every PDU the SMSC sends.
func (s *Sender) onPDU(p pdu.PDU) (pdu.PDU, bool) {
	switch pd := p.(type) {
	case *pdu.SubmitSMResp:
		s.answer(pd.GetSequenceNumber(), submitResult{id: pd.MessageID, status: pd.CommandStatus})
	case *pdu.GenericNack:
		s.answer(pd.GetSequenceNumber(), submitResult{status: pd.CommandStatus, nack: true})
	case *pdu.DeliverSM:
		if r, ok := parseReceipt(pd); ok && s.onReceipt != nil {
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				s.onReceipt(ctx, r)
			}()
		}
		return pd.GetResponse(), false
	case *pdu.EnquireLink:
		return pd.GetResponse(), false
	case *pdu.Unbind:
		return pd.GetResponse(), true
	case *pdu.DataSM:
		return pd.GetResponse(), false
	}
	return nil, false
}

func (s *Sender) answer(seq int32, r submitResult) {
	s.pmu.Lock()
	ch := s.pending[seq]
	delete(s.pending, seq)
	s.pmu.Unlock()
	if ch != nil {
		ch <- r
	}
}

// Receipt states (SMPP 3.4 §5.2.28 message_state) and stat words.
var (
	stateStatus = map[byte]string{1: store.MsgAccepted, 2: store.MsgDelivered, 3: store.MsgUndelivered,
		4: store.MsgFailed, 5: store.MsgUndelivered, 6: store.MsgAccepted, 8: store.MsgFailed}
	statStatus = map[string]string{"ENROUTE": store.MsgAccepted, "DELIVRD": store.MsgDelivered,
		"EXPIRED": store.MsgUndelivered, "DELETED": store.MsgFailed, "UNDELIV": store.MsgUndelivered,
		"ACCEPTD": store.MsgAccepted, "REJECTD": store.MsgFailed}
	receiptIDRE   = regexp.MustCompile(`(?i)\bid:([^\s]+)`)
	receiptStatRE = regexp.MustCompile(`(?i)\bstat:([A-Z]+)`)
	receiptErrRE  = regexp.MustCompile(`(?i)\berr:([0-9A-Za-z]{1,8})`)
)

// parseReceipt reads an SMSC delivery receipt; ok is false for anything else (a mobile-originated
// message) and for states that say nothing (UNKNOWN).
func parseReceipt(p *pdu.DeliverSM) (deliver.Receipt, bool) {
	if p.EsmClass&0x3C != 0x04 {
		return deliver.Receipt{}, false
	}
	var r deliver.Receipt
	if f, ok := p.OptionalParameters[pdu.TagReceiptedMessageID]; ok {
		r.ProviderMessageID = f.String()
	}
	if f, ok := p.OptionalParameters[pdu.TagMessageStateOption]; ok && len(f.Data) == 1 {
		r.Status = stateStatus[f.Data[0]]
	}
	text, _ := p.Message.GetMessageWithEncoding(data.ASCII)
	if r.ProviderMessageID == "" {
		if m := receiptIDRE.FindStringSubmatch(text); m != nil {
			r.ProviderMessageID = m[1]
		}
	}
	if r.Status == "" {
		if m := receiptStatRE.FindStringSubmatch(text); m != nil {
			r.Status = statStatus[strings.ToUpper(m[1])]
		}
	}
	if m := receiptErrRE.FindStringSubmatch(text); m != nil && strings.Trim(m[1], "0") != "" {
		r.Error = m[1]
	}
	if r.ProviderMessageID == "" || r.Status == "" || len(r.ProviderMessageID) > 65 {
		return deliver.Receipt{}, false
	}
	return r, true
}
