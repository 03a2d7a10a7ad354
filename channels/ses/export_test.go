package ses

// SetCertHostAllowed replaces the check on the hosts of SNS certificate and
// subscription URLs, so tests can serve them from loopback; restore puts
// the real check back.
func SetCertHostAllowed(f func(host string) bool) (restore func()) {
	old := certHostAllowed
	certHostAllowed = f
	return func() { certHostAllowed = old }
}

// SNSHostAllowed is the real host check.
func SNSHostAllowed(host string) bool { return snsHost.MatchString(host) }

// EventStatuses maps an SES event record, for fuzzing.
var EventStatuses = eventStatuses
