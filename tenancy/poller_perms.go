package tenancy

// pollerKVPublish returns the key-value subjects a poller user may publish
// to: its own heartbeat in the pollers bucket (the poller is named for its
// user) and its own site's group keys, the leader's lease and the
// assignment. Every write of a key (put, create, update, delete) is a
// publish to that key's subject, so a poller can neither forge another
// poller's heartbeat nor write the group of another site, even at that
// site's peer: the keys it may write there are its own site's, which that
// site's pollers never read.
//
// The subjects are bus's (bus.KVSubject with bus.PollerKey,
// bus.GroupLeaderKey and bus.GroupAssignmentKey), spelled out here because
// bus imports tenancy; TestPollerKVPermissions writes them through bus.
func pollerKVPublish(site, user string) []string {
	return []string{
		"$KV.pollers." + site + "." + user,
		"$KV.group." + site + ".leader",
		"$KV.group." + site + ".assignment",
	}
}
