package smtp

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"net/textproto"
	"strings"
	"time"

	"golang.org/x/net/idna"

	"github.com/kalcifer/kalcifer/channels"
)

// message is an email rendered as RFC 5322 text with its SMTP envelope.
type message struct {
	// id is the Message-ID header's value, angle brackets included.
	id           string
	envelopeFrom string
	envelopeTo   string
	data         []byte
}

// build renders m as a MIME message (RFC 2045-2047): UTF-8 text in
// quoted-printable, which keeps long lines within SMTP's limits and survives
// relays without 8BITMIME.
func build(m channels.Message, defaultFrom *mail.Address, now time.Time) (message, error) {
	e := m.Email
	from := defaultFrom
	if e.From != "" {
		a, err := mail.ParseAddress(e.From)
		if err != nil {
			return message{}, fmt.Errorf("from %q: %w", e.From, err)
		}
		from = a
	}
	to, err := mail.ParseAddress(e.To)
	if err != nil {
		return message{}, fmt.Errorf("to %q: %w", e.To, err)
	}
	var replyTo *mail.Address
	if e.ReplyTo != "" {
		if replyTo, err = mail.ParseAddress(e.ReplyTo); err != nil {
			return message{}, fmt.Errorf("reply_to %q: %w", e.ReplyTo, err)
		}
	}
	if e.Text == "" && e.HTML == "" {
		return message{}, errors.New("email has neither text nor html")
	}

	hash := keyHash(m)
	id := "<" + hash + "@" + idDomain(from.Address) + ">"

	var b bytes.Buffer
	header(&b, "Date", now.Format(time.RFC1123Z))
	header(&b, "From", from.String())
	header(&b, "To", to.String())
	if replyTo != nil {
		header(&b, "Reply-To", replyTo.String())
	}
	header(&b, "Subject", mime.QEncoding.Encode("utf-8", oneLine(e.Subject)))
	header(&b, "Message-ID", id)
	header(&b, "MIME-Version", "1.0")
	if m.DeliveryID != "" {
		header(&b, "X-Kalcifer-Delivery-Id", oneLine(m.DeliveryID))
	}

	if e.Text == "" || e.HTML == "" {
		// One body, sent as given: no plain text is made up from HTML.
		typ, body := "text/plain", e.Text
		if e.Text == "" {
			typ, body = "text/html", e.HTML
		}
		header(&b, "Content-Type", mime.FormatMediaType(typ, map[string]string{"charset": "utf-8"}))
		header(&b, "Content-Transfer-Encoding", "quoted-printable")
		b.WriteString("\r\n")
		if err := writeQP(&b, body); err != nil {
			return message{}, err
		}
		if !bytes.HasSuffix(b.Bytes(), []byte("\r\n")) {
			// SMTP ends the data with a line break of its own, which would
			// become part of the body; a soft line break absorbs it.
			b.WriteString("=\r\n")
		}
	} else {
		mw := multipart.NewWriter(&b)
		// Quoted-printable never writes "=_", so a boundary starting with it
		// cannot occur in a part; deriving it from the key keeps a resent
		// message byte for byte the same.
		if err := mw.SetBoundary("=_kalcifer_" + hash); err != nil {
			return message{}, fmt.Errorf("set boundary: %w", err)
		}
		header(&b, "Content-Type", mime.FormatMediaType("multipart/alternative", map[string]string{"boundary": mw.Boundary()}))
		b.WriteString("\r\n")
		// RFC 2046: the last alternative is the preferred one.
		for _, part := range []struct{ typ, body string }{{"text/plain", e.Text}, {"text/html", e.HTML}} {
			w, err := mw.CreatePart(textproto.MIMEHeader{
				"Content-Type":              {mime.FormatMediaType(part.typ, map[string]string{"charset": "utf-8"})},
				"Content-Transfer-Encoding": {"quoted-printable"},
			})
			if err != nil {
				return message{}, fmt.Errorf("start %s part: %w", part.typ, err)
			}
			if err := writeQP(w, part.body); err != nil {
				return message{}, err
			}
		}
		if err := mw.Close(); err != nil {
			return message{}, fmt.Errorf("end multipart body: %w", err)
		}
	}
	return message{id: id, envelopeFrom: from.Address, envelopeTo: to.Address, data: b.Bytes()}, nil
}

// keyHash names the message after its delivery's idempotency key, so every
// attempt at a delivery carries the same Message-ID and a recipient's mail
// system can tell a resend from a new message.
func keyHash(m channels.Message) string {
	key := m.Key
	if key == "" {
		key = m.DeliveryID
	}
	if key == "" {
		var r [16]byte
		rand.Read(r[:])
		return hex.EncodeToString(r[:])
	}
	sum := sha256.Sum256([]byte("kalcifer\x00" + m.TenantID + "\x00" + key))
	return hex.EncodeToString(sum[:16])
}

// idDomain is the right side of a Message-ID: the sender's domain, which
// the sender controls, so ids do not collide with other systems'.
func idDomain(addr string) string {
	at := strings.LastIndexByte(addr, '@')
	if at < 0 || at == len(addr)-1 {
		return "localhost"
	}
	domain := addr[at+1:]
	if isASCII(domain) {
		return domain
	}
	// Message-ID is ASCII even where addresses may not be (RFC 6532).
	if a, err := idna.Lookup.ToASCII(domain); err == nil {
		return a
	}
	return "localhost"
}

func writeQP(w interface{ Write([]byte) (int, error) }, body string) error {
	qp := quotedprintable.NewWriter(w)
	if _, err := qp.Write([]byte(body)); err != nil {
		return fmt.Errorf("encode body: %w", err)
	}
	if err := qp.Close(); err != nil {
		return fmt.Errorf("encode body: %w", err)
	}
	return nil
}

// oneLine keeps a value given for a header from breaking out of it.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' || r == 0 {
			return ' '
		}
		return r
	}, s)
}

// header writes a header field, folded at spaces to keep lines within the
// 78 characters RFC 5322 recommends where the words allow it. Encoded words
// are at most 75 characters, so an encoded value always folds in bounds.
func header(b *bytes.Buffer, name, value string) {
	line := len(name) + 1
	b.WriteString(name)
	b.WriteByte(':')
	for i, word := range strings.Split(value, " ") {
		if i > 0 && word != "" && line+1+len(word) > 78 && line > len(name)+1 {
			b.WriteString("\r\n")
			line = 0
		}
		b.WriteByte(' ')
		b.WriteString(word)
		line += 1 + len(word)
	}
	b.WriteString("\r\n")
}
