package peer

// The helpers of the package's own tests that its external tests
// (package peer_test, on internal/meshtest) share with them.
var (
	PublishSite = publishSite
	WaitCount   = waitCount
	PeerJS      = peerJS

	PublishStateEvents = publishStateEvents
	LeaseHolder        = leaseHolder
)
