package nodes

import "sync"

// defaultRegistry is built once: the types are immutable and compile their
// schemas lazily, so every caller can share them.
var defaultRegistry = sync.OnceValue(func() *Registry {
	types := []Type{
		newEventEntry(), newSegmentEntry(), newWebhookEntry(),
		newSendEmail(), newSendSMS(), newSendPush(), newSendWhatsApp(), newCallWebhook(),
		newWait(), newWaitUntil(), newWaitForEvent(), newCondition(), newABSplit(), newFrequencyCap(),
		newUpdateProfile(), newAddTag(), newRemoveTag(), newCustomCode(),
		newGoalReached(), newJourneyExit(),
	}
	r := &Registry{byName: make(map[string]Type, len(types))}
	for _, t := range types {
		r.byName[t.Name()] = t
	}
	return r
})

// Default returns the registry of the 20 built-in node types (SPEC §2).
func Default() *Registry {
	return defaultRegistry()
}
