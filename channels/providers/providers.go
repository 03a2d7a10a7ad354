// Package providers lists every provider kind Kalcifer ships.
package providers

import (
	"github.com/kalcifer/kalcifer/channels"
	"github.com/kalcifer/kalcifer/channels/apns"
	"github.com/kalcifer/kalcifer/channels/fcm"
	"github.com/kalcifer/kalcifer/channels/logprovider"
	"github.com/kalcifer/kalcifer/channels/meta"
	"github.com/kalcifer/kalcifer/channels/postmark"
	"github.com/kalcifer/kalcifer/channels/sendgrid"
	"github.com/kalcifer/kalcifer/channels/ses"
	"github.com/kalcifer/kalcifer/channels/smtp"
	"github.com/kalcifer/kalcifer/channels/twilio"
	"github.com/kalcifer/kalcifer/channels/webhook"
)

// All returns the kinds.
func All() []channels.Kind {
	return []channels.Kind{
		smtp.Kind, sendgrid.Kind, ses.Kind, postmark.Kind, twilio.Kind, meta.Kind, fcm.Kind, apns.Kind, webhook.Kind, logprovider.Kind,
	}
}
