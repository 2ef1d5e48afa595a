// Package console is the operator's web console that a central peer
// serves (--console-listen): server-rendered pages over every site, device,
// event and alarm a credential may read, with a small amount of plain
// JavaScript for the live event feed.
//
// The console holds no credential of its own. A user logs in with the
// credential the CLI uses (a .creds file, or a user and password at a
// central with its own users); the console opens a NATS connection with it
// on the user's behalf and reads everything through that connection, so
// what a page shows is exactly what NATS lets that credential read: a
// tenant's user sees its own tenant because its account holds nothing
// else, not because a page filters.
package console
