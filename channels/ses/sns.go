package ses

import (
	"cmp"
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/kalcifer/kalcifer/channels"
)

// snsHost is the host SNS serves its signing certificates and subscription
// URLs from; the port is part of the match, so none is allowed.
var snsHost = regexp.MustCompile(`^sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$`)

// certHostAllowed says whether a certificate or subscription URL's host
// (with its port, if any) is SNS's. Only tests replace it, to serve
// certificates from loopback.
var certHostAllowed = func(host string) bool { return snsHost.MatchString(host) }

// snsMessage is what SNS posts to an HTTPS subscription.
// https://docs.aws.amazon.com/sns/latest/dg/http-notification-json.html
type snsMessage struct {
	Type      string `json:"Type"`
	MessageID string `json:"MessageId"`
	Token     string `json:"Token"`
	TopicArn  string `json:"TopicArn"`
	// Subject is signed only when present, so absent and empty differ.
	Subject          *string `json:"Subject"`
	Message          string  `json:"Message"`
	Timestamp        string  `json:"Timestamp"`
	SignatureVersion string  `json:"SignatureVersion"`
	Signature        string  `json:"Signature"`
	SigningCertURL   string  `json:"SigningCertURL"`
	SubscribeURL     string  `json:"SubscribeURL"`
}

// Statuses verifies an SNS message carrying an SES event and maps the event.
// A subscription confirmation is confirmed and reports nothing.
func Statuses(r *http.Request, body []byte, config json.RawMessage, deps channels.Deps) ([]channels.Status, error) {
	c, err := loadConfig(config)
	if err != nil {
		return nil, err
	}
	if err := deps.Require("ses", true); err != nil {
		return nil, err
	}
	var m snsMessage
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, fmt.Errorf("ses: decode SNS message: %w", err)
	}
	// SNS signs the messages of anyone's topics: only the configured
	// topic's are this account's.
	if c.TopicArn == "" {
		return nil, fmt.Errorf("ses: set topic_arn to take SNS notifications: %w", channels.ErrBadSignature)
	}
	if m.TopicArn != c.TopicArn {
		return nil, fmt.Errorf("ses: SNS message from topic %q, not the configured one: %w", m.TopicArn, channels.ErrBadSignature)
	}
	ctx := r.Context()
	if err := verify(ctx, m, deps); err != nil {
		return nil, err
	}
	switch m.Type {
	case "SubscriptionConfirmation":
		return nil, confirm(ctx, m.SubscribeURL, deps)
	case "Notification":
		return eventStatuses(m.Message, m.MessageID, m.Timestamp)
	}
	return nil, nil
}

// stringToSign is SNS's canonical form of a message: the signed fields in
// byte order of their names, each name and value on a line.
// https://docs.aws.amazon.com/sns/latest/dg/sns-verify-signature-of-message.html
func stringToSign(m snsMessage) (string, bool) {
	var b strings.Builder
	add := func(k, v string) {
		b.WriteString(k)
		b.WriteByte('\n')
		b.WriteString(v)
		b.WriteByte('\n')
	}
	switch m.Type {
	case "Notification":
		add("Message", m.Message)
		add("MessageId", m.MessageID)
		if m.Subject != nil {
			add("Subject", *m.Subject)
		}
		add("Timestamp", m.Timestamp)
		add("TopicArn", m.TopicArn)
		add("Type", m.Type)
	case "SubscriptionConfirmation", "UnsubscribeConfirmation":
		add("Message", m.Message)
		add("MessageId", m.MessageID)
		add("SubscribeURL", m.SubscribeURL)
		add("Timestamp", m.Timestamp)
		add("Token", m.Token)
		add("TopicArn", m.TopicArn)
		add("Type", m.Type)
	default:
		return "", false
	}
	return b.String(), true
}

func verify(ctx context.Context, m snsMessage, deps channels.Deps) error {
	s, ok := stringToSign(m)
	if !ok {
		return fmt.Errorf("ses: unknown SNS message type %q: %w", m.Type, channels.ErrBadSignature)
	}
	var hash crypto.Hash
	var digest []byte
	switch m.SignatureVersion {
	case "1":
		sum := sha1.Sum([]byte(s))
		hash, digest = crypto.SHA1, sum[:]
	case "2":
		sum := sha256.Sum256([]byte(s))
		hash, digest = crypto.SHA256, sum[:]
	default:
		return fmt.Errorf("ses: unknown SNS signature version %q: %w", m.SignatureVersion, channels.ErrBadSignature)
	}
	sig, err := base64.StdEncoding.DecodeString(m.Signature)
	if err != nil {
		return fmt.Errorf("ses: SNS signature is not base64: %w", channels.ErrBadSignature)
	}
	cert, err := signingCert(ctx, m.SigningCertURL, deps)
	if err != nil {
		return err
	}
	pub, ok := cert.PublicKey.(*rsa.PublicKey)
	if !ok {
		return fmt.Errorf("ses: SNS signing certificate has no RSA key: %w", channels.ErrBadSignature)
	}
	if err := rsa.VerifyPKCS1v15(pub, hash, digest, sig); err != nil {
		return fmt.Errorf("ses: SNS message signature: %w", channels.ErrBadSignature)
	}
	return nil
}

// snsURL parses a URL the message points at, refusing any that is not
// https on an SNS host: the message is not yet trusted, and fetching
// whatever it names would let anyone supply the key it is checked with.
func snsURL(raw, what string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "https" || u.User != nil || !certHostAllowed(u.Host) {
		return nil, fmt.Errorf("ses: %s %q is not an https URL on an SNS host: %w", what, raw, channels.ErrBadSignature)
	}
	return u, nil
}

// certs caches signing certificates by URL: SNS signs with few of them, and
// each message names one.
var certs = struct {
	sync.Mutex
	m map[string]*x509.Certificate
}{m: map[string]*x509.Certificate{}}

// maxCerts bounds the cache; SNS rotates its certificates rarely, so a full
// cache is simply emptied.
const maxCerts = 64

func signingCert(ctx context.Context, raw string, deps channels.Deps) (*x509.Certificate, error) {
	u, err := snsURL(raw, "SigningCertURL")
	if err != nil {
		return nil, err
	}
	key := u.String()
	certs.Lock()
	cert := certs.m[key]
	certs.Unlock()
	if cert == nil {
		if cert, err = fetchCert(ctx, key, deps); err != nil {
			return nil, err
		}
		certs.Lock()
		if len(certs.m) >= maxCerts {
			clear(certs.m)
		}
		certs.m[key] = cert
		certs.Unlock()
	}
	if now := deps.Now(); now.Before(cert.NotBefore) || now.After(cert.NotAfter) {
		return nil, fmt.Errorf("ses: SNS signing certificate %s is not valid at %s: %w", key, now.Format(time.RFC3339), channels.ErrBadSignature)
	}
	return cert, nil
}

// fetchCert's failures other than a certificate that does not parse are
// the network's, not the sender's: they are plain errors, so SNS is asked
// to try again.
func fetchCert(ctx context.Context, u string, deps channels.Deps) (*x509.Certificate, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("ses: fetch SNS signing certificate: %w", err)
	}
	resp, err := channels.Do(ctx, deps.HTTP, req)
	if err != nil {
		return nil, fmt.Errorf("ses: fetch SNS signing certificate: %w", err)
	}
	if resp.Status != http.StatusOK {
		return nil, fmt.Errorf("ses: fetch SNS signing certificate %s: HTTP %d", u, resp.Status)
	}
	block, _ := pem.Decode(resp.Body)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("ses: SNS signing certificate %s is not a PEM certificate: %w", u, channels.ErrBadSignature)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("ses: parse SNS signing certificate %s: %v: %w", u, err, channels.ErrBadSignature)
	}
	return cert, nil
}

// confirm visits the SubscribeURL, which is how an HTTPS endpoint accepts
// a subscription.
// https://docs.aws.amazon.com/sns/latest/dg/http-subscription-confirmation-json.html
func confirm(ctx context.Context, raw string, deps channels.Deps) error {
	u, err := snsURL(raw, "SubscribeURL")
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return fmt.Errorf("ses: confirm SNS subscription: %w", err)
	}
	resp, err := channels.Do(ctx, deps.HTTP, req)
	if err != nil {
		return fmt.Errorf("ses: confirm SNS subscription: %w", err)
	}
	if resp.Status/100 != 2 {
		return fmt.Errorf("ses: confirm SNS subscription: HTTP %d", resp.Status)
	}
	return nil
}

// sesEvent is an SES event record as event publishing sends it to SNS.
// https://docs.aws.amazon.com/ses/latest/dg/event-publishing-retrieving-sns-contents.html
type sesEvent struct {
	EventType string `json:"eventType"`
	// NotificationType replaces EventType in an identity's own feedback
	// notifications, which carry no tags but the same message id.
	NotificationType string `json:"notificationType"`
	Mail             struct {
		MessageID string              `json:"messageId"`
		Tags      map[string][]string `json:"tags"`
	} `json:"mail"`
	Bounce *struct {
		BounceType        string `json:"bounceType"`
		BounceSubType     string `json:"bounceSubType"`
		Timestamp         string `json:"timestamp"`
		BouncedRecipients []struct {
			Status         string `json:"status"`
			DiagnosticCode string `json:"diagnosticCode"`
		} `json:"bouncedRecipients"`
	} `json:"bounce"`
	Delivery *struct {
		Timestamp string `json:"timestamp"`
	} `json:"delivery"`
	Reject *struct {
		Reason string `json:"reason"`
	} `json:"reject"`
	Failure *struct {
		ErrorMessage string `json:"errorMessage"`
	} `json:"failure"`
	Open *struct {
		Timestamp string `json:"timestamp"`
	} `json:"open"`
	Click *struct {
		Timestamp string `json:"timestamp"`
	} `json:"click"`
}

// eventStatuses maps one SES event; snsID names the event and snsTime
// stands in for the events that carry no time of their own.
func eventStatuses(message, snsID, snsTime string) ([]channels.Status, error) {
	var e sesEvent
	if err := json.Unmarshal([]byte(message), &e); err != nil {
		return nil, fmt.Errorf("ses: decode SES event: %w", err)
	}
	kind := e.EventType
	if kind == "" {
		kind = e.NotificationType
	}
	s := channels.Status{MessageID: e.Mail.MessageID, EventID: snsID}
	if v := e.Mail.Tags[channels.DeliveryIDKey]; len(v) > 0 {
		s.DeliveryID = v[0]
	}
	at := snsTime
	switch kind {
	case "Delivery":
		s.Type = channels.StatusDelivered
		if e.Delivery != nil {
			at = cmp.Or(e.Delivery.Timestamp, at)
		}
	case "Bounce":
		// A transient bounce is SES still trying; only a permanent one
		// ends the delivery.
		if e.Bounce == nil || e.Bounce.BounceType != "Permanent" {
			return nil, nil
		}
		s.Type = channels.StatusBounced
		at = cmp.Or(e.Bounce.Timestamp, at)
		s.Reason = e.Bounce.BounceType + "/" + e.Bounce.BounceSubType
		for _, r := range e.Bounce.BouncedRecipients {
			if d := cmp.Or(r.DiagnosticCode, r.Status); d != "" {
				s.Reason += ": " + d
				break
			}
		}
	case "Reject":
		s.Type = channels.StatusFailed
		if e.Reject != nil {
			s.Reason = e.Reject.Reason
		}
	case "Rendering Failure":
		s.Type = channels.StatusFailed
		if e.Failure != nil {
			s.Reason = e.Failure.ErrorMessage
		}
	case "Open":
		s.Type = channels.StatusOpened
		if e.Open != nil {
			at = cmp.Or(e.Open.Timestamp, at)
		}
	case "Click":
		s.Type = channels.StatusClicked
		if e.Click != nil {
			at = cmp.Or(e.Click.Timestamp, at)
		}
	default:
		return nil, nil
	}
	if s.MessageID == "" && s.DeliveryID == "" {
		return nil, errors.New("ses: SES event names no message")
	}
	t, err := time.Parse(time.RFC3339Nano, at)
	if err != nil {
		return nil, fmt.Errorf("ses: SES event time %q: %w", at, err)
	}
	s.At = t
	return []channels.Status{s}, nil
}
