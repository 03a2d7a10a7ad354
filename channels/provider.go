package channels

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"time"
)

// The channels a delivery goes out on.
const (
	Email    = "email"
	SMS      = "sms"
	WhatsApp = "whatsapp"
	Push     = "push"
	Webhook  = "webhook"
)

// DeliveryIDKey is the name under which messages carry their delivery's
// id wherever a provider keeps custom data (custom args, tags, metadata,
// push data, callback queries) and echoes it back in status callbacks.
const DeliveryIDKey = "kalcifer_delivery_id"

// Message is one delivery rendered for its recipient: the fields of its
// channel are set and the others are nil.
type Message struct {
	// DeliveryID names the delivery; providers that echo custom data back in
	// their status callbacks carry it, so statuses find their delivery.
	DeliveryID string
	TenantID   string
	// Key is the delivery's idempotency key, the same at every attempt.
	Key     string
	Channel string

	Email    *EmailMessage
	SMS      *TextMessage
	WhatsApp *WhatsAppMessage
	Push     *PushMessage
	Webhook  *WebhookMessage
}

// EmailMessage is an email. From may be empty: the provider's configured
// sender is used then. HTML or Text, or both, are set.
type EmailMessage struct {
	From    string
	ReplyTo string
	To      string
	Subject string
	HTML    string
	Text    string
}

// TextMessage is an SMS to a phone number in E.164 form. From may be empty:
// the provider's configured sender is used then.
type TextMessage struct {
	From string
	To   string
	Body string
}

// WhatsAppMessage is a WhatsApp message to a phone number in E.164 form:
// free text (Body) or, when Template is set, an approved template in
// Language with its body parameters in order.
type WhatsAppMessage struct {
	From     string
	To       string
	Body     string
	Template string
	Language string
	Params   []string
}

// PushMessage is a notification to each of a customer's device tokens.
type PushMessage struct {
	Tokens []string
	Title  string
	Body   string
	Data   map[string]string
}

// WebhookMessage is an HTTP request to an external system.
type WebhookMessage struct {
	URL     string
	Method  string
	Headers map[string]string
	Body    []byte
	Timeout time.Duration
}

// Provider sends messages through one provider account.
type Provider interface {
	// Send delivers m and returns the provider's id for it. Its errors are
	// *Error where the provider said why; any other error is treated as
	// retryable and unsure.
	Send(ctx context.Context, m Message) (messageID string, err error)
}

// Deps are what providers take from the process rather than from their
// configuration.
type Deps struct {
	// HTTP makes every outbound request; it refuses private targets unless
	// the process allows them (netguard).
	HTTP *http.Client
	// Dial opens the connections that are not HTTP (SMTP), under the same
	// guard.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// RootCAs verifies servers' certificates; nil trusts the system's roots.
	RootCAs *x509.CertPool
	Now     func() time.Time
	// Logger is the process's; the log provider writes its sends there.
	Logger *slog.Logger
}

// Kind is one provider implementation: the name configurations give as
// their kind, the channels it serves, and how to build one.
type Kind struct {
	Name     string
	Channels []string
	// Idempotent says the provider drops a second request with the same
	// idempotency key, so a send whose outcome is unknown can be sent
	// again. Otherwise such a send is failed rather than risk a duplicate.
	Idempotent bool
	// Secrets are the fields of the configuration that are credentials:
	// they are stored encrypted and never returned.
	Secrets []string
	// New builds a provider from its configuration (a JSON object) or says
	// which field is wrong.
	New func(config json.RawMessage, deps Deps) (Provider, error)
	// Statuses checks the signature of a status callback the provider
	// posted, with the body read from it, and returns the statuses it
	// reports. It is nil for providers that post none. A request that fails
	// the check returns an error wrapping ErrBadSignature.
	Statuses func(r *http.Request, body []byte, config json.RawMessage, deps Deps) ([]Status, error)
	// Challenge answers the GET a provider sends to check a callback URL
	// before it posts statuses there (Meta's hub.challenge): the body to
	// answer with, or false to refuse. It is nil for providers that send
	// none.
	Challenge func(query url.Values, config json.RawMessage) (string, bool)
}

// Status types a provider reports about a message it took.
const (
	StatusDelivered = "delivered"
	StatusBounced   = "bounced"
	StatusFailed    = "failed"
	StatusOpened    = "opened"
	StatusClicked   = "clicked"
)

// Status is one event a provider reports about a message.
type Status struct {
	// MessageID is the provider's id for the message, as Send returned it.
	MessageID string
	// DeliveryID is set when the provider echoes back the delivery id the
	// message carried; it takes precedence over MessageID.
	DeliveryID string
	Type       string
	At         time.Time
	// EventID identifies the event at the provider, so a repeated callback
	// is recorded once; "" when the provider gives none.
	EventID string
	// Reason is the provider's explanation of a bounce or failure.
	Reason string
}
