package bus

import "errors"

// ErrDeviceExists is returned by Inventory.Create when a device of that
// name is already in the inventory.
var ErrDeviceExists = errors.New("device already exists")

// ErrDeviceNotFound is returned by Inventory.Get and Inventory.Delete when
// no device of that name is in the inventory.
var ErrDeviceNotFound = errors.New("device not found")

// ErrDeviceChanged is wrapped by Inventory.Update when the device changed,
// or was removed, since the revision it was read at.
var ErrDeviceChanged = errors.New("device changed since it was read; read it again")

// ErrNoParent is returned by Inventory.Add when the device's parent is
// not in the inventory.
var ErrNoParent = errors.New("no such device at this site; add the parent first")

// ErrNoServer is wrapped by ConnectWait when no server answered at the
// configured URL before the context was done.
var ErrNoServer = errors.New("no server answering")

// ErrInvalidConfig is wrapped by every error that ConnConfig.Validate and
// StreamLimits.Validate return.
var ErrInvalidConfig = errors.New("invalid config")

// ErrUnresolvable is wrapped by ConnectWait when no host name of the server
// URL resolves.
var ErrUnresolvable = errors.New("cannot resolve server host")

// ErrNotConnected is wrapped by PublishBatch when the connection to the peer
// is down; the caller keeps the messages and retries.
var ErrNotConnected = errors.New("not connected to the peer")

// ErrNameTaken is wrapped by Registry.Claim when another running poller
// holds the name.
var ErrNameTaken = errors.New("is taken by another running poller")

// ErrWrongSite is wrapped by CheckSite when the peer serves another site.
var ErrWrongSite = errors.New("peer serves another site")

// ErrSiteExists is wrapped by AddSite when central knows the site already.
var ErrSiteExists = errors.New("site already exists")

// ErrSiteNotFound is wrapped by RemoveSite when central does not know the site.
var ErrSiteNotFound = errors.New("site not found")

// ErrNoConsumerName is wrapped when a tenant user's consumer names on a
// stream are all in use (tenancy.ConsumerNames).
var ErrNoConsumerName = errors.New("no consumer name free")

// ErrReplayIncomplete is wrapped by Tail when a replay cannot deliver every
// message the stream held when it started.
var ErrReplayIncomplete = errors.New("replay incomplete")

// ErrNotReady is wrapped by CheckReady when a stream or bucket of the peer's
// role is missing or has no leader yet.
var ErrNotReady = errors.New("peer not ready")

// ErrPeerUp is wrapped by RemoveClusterPeer and RemovePeer for a cluster
// member that is up, unless the removal is forced.
var ErrPeerUp = errors.New("the peer is up")

// ErrNoSuchPeer is wrapped by RemoveClusterPeer and RemovePeer for a name
// that is no member of the cluster.
var ErrNoSuchPeer = errors.New("no such peer")

// ErrLeaseLost is wrapped by Elector.Renew when the lease changed hands
// (it lapsed, or another candidate holds it now).
var ErrLeaseLost = errors.New("the lease changed hands")

// ErrSiteOffline is wrapped by RunTask when no poller of the site answered
// in time: the site's link is down, or it runs no poller.
var ErrSiteOffline = errors.New("site offline")

// ErrNoOwner is wrapped by RunTask when the site has the device but no
// poller owns it (no assignment yet, or every poller of the site is down).
var ErrNoOwner = errors.New("no poller owns the device")

// ErrTaskDevice is wrapped by RunTask when the site has no such device.
var ErrTaskDevice = errors.New("no such device at the site")

// ErrTaskFailed is wrapped by RunTask when the site ran the task and it
// failed; the error carries the site's reason.
var ErrTaskFailed = errors.New("task failed")

// ErrTaskRefused is wrapped by RunTask when the site refused to run the
// task (bad input, too large, busy); the site records the refusal.
var ErrTaskRefused = errors.New("task refused")

// ErrTaskTimeout is wrapped by RunTask when the task did not end within
// its timeout, or the site stopped answering while it ran.
var ErrTaskTimeout = errors.New("task timed out")

// ErrAtomicRefused is wrapped by PublishAtomic when the server refused the
// batch whole (a duplicate Nats-Msg-Id in it, atomic publish not allowed on
// the stream, ...): nothing of it is stored, and the caller publishes the
// messages one by one instead.
var ErrAtomicRefused = errors.New("atomic batch refused")

// ErrReplicaBehind is wrapped by a read that found every replica it was
// placed on short of what the stream's leader holds, until it gave up.
var ErrReplicaBehind = errors.New("replica behind the stream's leader")

// ErrParentLoop is wrapped when a device's parents would lead back to it.
var ErrParentLoop = errors.New("parents would make a loop; a device cannot be its own ancestor")
