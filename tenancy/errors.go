package tenancy

import "errors"

var (
	// ErrExists: the key store, tenant or user already exists.
	ErrExists = errors.New("already exists")
	// ErrNoStore: the directory holds no key store.
	ErrNoStore = errors.New("no key store")
	// ErrPermissions: the key store can be read by others than its owner.
	ErrPermissions = errors.New("key store is not private")
	// ErrNoTenant: there is no tenant of that name.
	ErrNoTenant = errors.New("no such tenant")
	// ErrNoSite: the site is not one of the tenant's.
	ErrNoSite = errors.New("not a site")
	// ErrReservedName: the name is meshmon's own (ReservedTenants).
	ErrReservedName = errors.New("reserved name")
	// ErrNoUser: the tenant has no user of that name.
	ErrNoUser = errors.New("no such user")
)
