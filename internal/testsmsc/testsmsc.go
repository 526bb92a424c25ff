// Package testsmsc is a small SMPP 3.4 SMSC for tests, built on gosmpp's pdu package: it accepts
// binds (transceiver, transmitter, receiver) with a system id and password, answers enquire_link
// and unbind, takes submit_sm — reassembling concatenated parts (UDH) and decoding GSM 03.38 and
// UCS-2 — answers each with a message id, and sends SMSC delivery receipts (deliver_sm with
// esm_class 0x04, the receipted_message_id and message_state TLVs and the usual "id:… stat:…"
// text) when the submit asked for them. Failures are scripted per submit.
//
// It is a real peer on loopback TCP, so the SMPP provider is tested over the wire, not against a
// stand-in of its own interfaces.
package testsmsc

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/linxGnu/gosmpp/data"
	"github.com/linxGnu/gosmpp/pdu"
)

// Options configure a Server. Zero values take the defaults documented on them.
type Options struct {
	// SystemID and Password are the only credentials a bind succeeds with (default "otpd" and
	// "secret").
	SystemID, Password string
	// Fail decides the command status of submit_sm number n (1-based, every part counts); 0
	// (ESME_ROK) accepts it. nil accepts everything.
	Fail func(n int) data.CommandStatusType
	// Hang, when it returns true for submit number n, leaves that submit unanswered (the sender
	// must time out).
	Hang func(n int) bool
	// ReceiptStat is the stat of delivery receipts (DELIVRD, UNDELIV, EXPIRED, REJECTD, ACCEPTD,
	// ENROUTE); default DELIVRD. NoReceipts sends none.
	ReceiptStat string
	NoReceipts  bool
	// ReceiptDelay waits before a receipt is sent.
	ReceiptDelay time.Duration
	// IgnoreBinds accepts connections and reads what arrives, but never answers a bind: an
	// SMSC that hangs.
	IgnoreBinds bool
}

// Message is one short message the SMSC accepted (all its parts).
type Message struct {
	ID                 string // the message id of its first part
	PartIDs            []string
	From, To           string
	Text               string
	Parts              int
	DataCoding         byte
	RegisteredDelivery byte
}

// Server is a running SMSC.
type Server struct {
	o  Options
	ln net.Listener

	mu       sync.Mutex
	cond     *sync.Cond
	msgs     []Message
	submits  int
	binds    int
	accepted int
	unbinds  int
	nextID   int
	conns    map[*conn]bool
	partials map[string]*partial
	closed   bool
	wg       sync.WaitGroup
}

type partial struct {
	parts [][]byte
	ids   []string
	got   int
	rd    byte // registered_delivery of any part
	enc   data.Encoding
	owner *conn
}

type conn struct {
	net.Conn
	wmu   sync.Mutex
	bound bool
}

// Start runs a server on a loopback port until t ends.
func Start(t testing.TB, o Options) *Server {
	t.Helper()
	if o.SystemID == "" {
		o.SystemID = "otpd"
	}
	if o.Password == "" {
		o.Password = "secret"
	}
	if o.ReceiptStat == "" {
		o.ReceiptStat = "DELIVRD"
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{o: o, ln: ln, conns: map[*conn]bool{}, partials: map[string]*partial{}}
	s.cond = sync.NewCond(&s.mu)
	s.wg.Add(1)
	go s.serve()
	t.Cleanup(s.Close)
	return s
}

// Addr is host:port.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Close stops the server and drops every connection.
func (s *Server) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	for c := range s.conns {
		c.Close()
	}
	s.cond.Broadcast()
	s.mu.Unlock()
	s.ln.Close()
	s.wg.Wait()
}

// DropConnections closes every open connection (the SMSC "restarts"); the server keeps listening.
func (s *Server) DropConnections() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		c.Close()
	}
}

// Messages returns the messages received so far, oldest first.
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.msgs...)
}

// Submits counts submit_sm PDUs (parts, failed ones included).
func (s *Server) Submits() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.submits
}

// Binds counts successful binds.
func (s *Server) Binds() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.binds
}

// Accepted counts the connections accepted so far.
func (s *Server) Accepted() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.accepted
}

// Unbinds counts the unbind requests received.
func (s *Server) Unbinds() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.unbinds
}

// Open counts the connections open now.
func (s *Server) Open() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// WaitUntil waits until cond (called with no lock held) is true, polling; false when timeout
// passed first.
func (s *Server) WaitUntil(cond func() bool, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return true
}

// WaitFor waits until a complete message to `to` has arrived and returns the latest one.
func (s *Server) WaitFor(t testing.TB, to string, timeout time.Duration) Message {
	t.Helper()
	deadline := time.Now().Add(timeout)
	timer := time.AfterFunc(timeout, func() {
		s.mu.Lock()
		s.cond.Broadcast()
		s.mu.Unlock()
	})
	defer timer.Stop()
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		for i := len(s.msgs) - 1; i >= 0; i-- {
			if s.msgs[i].To == to {
				return s.msgs[i]
			}
		}
		if s.closed || time.Now().After(deadline) {
			t.Fatalf("testsmsc: no message to %s within %v", to, timeout)
		}
		s.cond.Wait()
	}
}

// SendReceipt sends a delivery receipt for message id with stat to every bound connection.
func (s *Server) SendReceipt(id, from, to, stat string) error {
	s.mu.Lock()
	var cs []*conn
	for c := range s.conns {
		if c.bound {
			cs = append(cs, c)
		}
	}
	s.mu.Unlock()
	if len(cs) == 0 {
		return errors.New("testsmsc: no bound connection")
	}
	var errs []error
	for _, c := range cs {
		errs = append(errs, c.write(receipt(id, from, to, stat, "")))
	}
	return errors.Join(errs...)
}

func (s *Server) serve() {
	defer s.wg.Done()
	for {
		nc, err := s.ln.Accept()
		if err != nil {
			return
		}
		c := &conn{Conn: nc}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			nc.Close()
			return
		}
		s.conns[c] = true
		s.accepted++
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.handle(c)
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
			c.Close()
		}()
	}
}

func (c *conn) write(p pdu.PDU) error {
	buf := pdu.NewBuffer(nil)
	p.Marshal(buf)
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, err := c.Write(buf.Bytes())
	return err
}

func (s *Server) handle(c *conn) {
	for {
		p, err := pdu.Parse(c)
		if err != nil {
			return
		}
		switch req := p.(type) {
		case *pdu.BindRequest:
			if s.o.IgnoreBinds {
				continue
			}
			resp := req.GetResponse().(*pdu.BindResp)
			resp.SystemID = "testsmsc"
			if req.SystemID != s.o.SystemID || req.Password != s.o.Password {
				resp.CommandStatus = data.ESME_RBINDFAIL
				_ = c.write(resp)
				return
			}
			s.mu.Lock()
			c.bound = true
			s.binds++
			s.mu.Unlock()
			_ = c.write(resp)
		case *pdu.EnquireLink:
			_ = c.write(req.GetResponse())
		case *pdu.Unbind:
			s.mu.Lock()
			s.unbinds++
			s.mu.Unlock()
			_ = c.write(req.GetResponse())
			return
		case *pdu.SubmitSM:
			if !c.bound {
				resp := req.GetResponse().(*pdu.SubmitSMResp)
				resp.CommandStatus = data.ESME_RINVBNDSTS
				_ = c.write(resp)
				continue
			}
			s.submit(c, req)
		case *pdu.DeliverSMResp, *pdu.EnquireLinkResp, *pdu.UnbindResp, *pdu.GenericNack:
			// answers to what we sent
		default:
			if p.CanResponse() {
				nack := pdu.NewGenericNack().(*pdu.GenericNack)
				nack.SequenceNumber = p.GetSequenceNumber()
				nack.CommandStatus = data.ESME_RINVCMDID
				_ = c.write(nack)
			}
		}
	}
}

func (s *Server) submit(c *conn, req *pdu.SubmitSM) {
	s.mu.Lock()
	s.submits++
	n := s.submits
	s.mu.Unlock()
	if s.o.Hang != nil && s.o.Hang(n) {
		return
	}
	resp := req.GetResponse().(*pdu.SubmitSMResp)
	if s.o.Fail != nil {
		if st := s.o.Fail(n); st != data.ESME_ROK {
			resp.CommandStatus = st
			resp.MessageID = ""
			_ = c.write(resp)
			return
		}
	}
	raw, _ := req.Message.GetMessageData()
	enc := req.Message.Encoding()
	s.mu.Lock()
	s.nextID++
	id := fmt.Sprintf("smsc-%06d", s.nextID)
	var done *Message
	total, seq, ref, concat := req.Message.UDH().GetConcatInfo()
	if !concat || total <= 1 {
		done = &Message{ID: id, PartIDs: []string{id}, Parts: 1, Text: decode(enc, raw)}
	} else {
		key := fmt.Sprintf("%s|%s|%d|%d", req.SourceAddr.Address(), req.DestAddr.Address(), ref, total)
		pt := s.partials[key]
		if pt == nil {
			pt = &partial{parts: make([][]byte, total), ids: make([]string, total), enc: enc, owner: c}
			s.partials[key] = pt
		}
		if seq >= 1 && int(seq) <= int(total) && pt.parts[seq-1] == nil {
			pt.parts[seq-1] = raw
			pt.ids[seq-1] = id
			pt.rd |= req.RegisteredDelivery
			pt.got++
		}
		if pt.got == int(total) {
			delete(s.partials, key)
			var text strings.Builder
			for _, part := range pt.parts {
				text.WriteString(decode(enc, part))
			}
			done = &Message{ID: pt.ids[0], PartIDs: pt.ids, Parts: int(total), Text: text.String(), RegisteredDelivery: pt.rd}
		}
	}
	if done != nil {
		done.From, done.To = req.SourceAddr.Address(), req.DestAddr.Address()
		if enc != nil {
			done.DataCoding = enc.DataCoding()
		}
		done.RegisteredDelivery |= req.RegisteredDelivery
		s.msgs = append(s.msgs, *done)
		s.cond.Broadcast()
	}
	s.mu.Unlock()
	resp.MessageID = id
	_ = c.write(resp)
	if done != nil && done.RegisteredDelivery&0x01 != 0 && !s.o.NoReceipts {
		m := *done
		go func() {
			if s.o.ReceiptDelay > 0 {
				time.Sleep(s.o.ReceiptDelay)
			}
			_ = c.write(receipt(m.ID, m.To, m.From, s.o.ReceiptStat, m.Text))
		}()
	}
}

func decode(enc data.Encoding, b []byte) string {
	if enc == nil {
		enc = data.GSM7BIT
	}
	s, err := enc.Decode(b)
	if err != nil {
		return string(b)
	}
	return s
}

// messageStates are SMPP 3.4 message_state values by receipt stat.
var messageStates = map[string]byte{"ENROUTE": 1, "DELIVRD": 2, "EXPIRED": 3, "DELETED": 4,
	"UNDELIV": 5, "ACCEPTD": 6, "UNKNOWN": 7, "REJECTD": 8}

// receipt builds an SMSC delivery receipt for message id.
func receipt(id, from, to, stat, text string) pdu.PDU {
	p := pdu.NewDeliverSM().(*pdu.DeliverSM)
	p.SourceAddr = pdu.NewAddressWithTonNpi(1, 1)
	_ = p.SourceAddr.SetAddress(from)
	p.DestAddr = pdu.NewAddressWithTonNpi(5, 0)
	_ = p.DestAddr.SetAddress(to)
	p.EsmClass = 0x04 // SMSC delivery receipt
	if len(text) > 20 {
		text = text[:20]
	}
	now := time.Now().UTC().Format("0601021504")
	dlvrd := "001"
	if stat != "DELIVRD" {
		dlvrd = "000"
	}
	body := fmt.Sprintf("id:%s sub:001 dlvrd:%s submit date:%s done date:%s stat:%s err:000 text:%s", id, dlvrd, now, now, stat, text)
	_ = p.Message.SetMessageWithEncoding(body, data.ASCII)
	p.RegisterOptionalParam(pdu.Field{Tag: pdu.TagReceiptedMessageID, Data: append([]byte(id), 0)})
	if st, ok := messageStates[stat]; ok {
		p.RegisterOptionalParam(pdu.Field{Tag: pdu.TagMessageStateOption, Data: []byte{st}})
	}
	return p
}
