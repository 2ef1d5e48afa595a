package poller

// OIDs the probes and the trap listener use, without a leading dot.
const (
	oidSysDescr    = "1.3.6.1.2.1.1.1.0"
	oidSysObjectID = "1.3.6.1.2.1.1.2.0"
	oidSysUpTime   = "1.3.6.1.2.1.1.3.0"
	oidSysName     = "1.3.6.1.2.1.1.5.0"

	// ifTable (IF-MIB::ifEntry) columns.
	oidIfEntry       = "1.3.6.1.2.1.2.2.1"
	oidIfIndex       = oidIfEntry + ".1"
	oidIfDescr       = oidIfEntry + ".2"
	oidIfAdminStatus = oidIfEntry + ".7"
	oidIfOperStatus  = oidIfEntry + ".8"
	oidIfInOctets    = oidIfEntry + ".10"
	oidIfOutOctets   = oidIfEntry + ".16"

	// ifXTable (IF-MIB::ifXEntry) columns.
	oidIfXEntry      = "1.3.6.1.2.1.31.1.1.1"
	oidIfName        = oidIfXEntry + ".1"
	oidIfHCInOctets  = oidIfXEntry + ".6"
	oidIfHCOutOctets = oidIfXEntry + ".10"

	// Notifications (SNMPv2-MIB, RFC 3584 section 3.1).
	oidSnmpTrapOID        = "1.3.6.1.6.3.1.1.4.1.0"
	oidSnmpTrapEnterprise = "1.3.6.1.6.3.1.1.4.3.0"
	oidSnmpTraps          = "1.3.6.1.6.3.1.1.5" // .1 coldStart ... .6 egpNeighborLoss
	oidColdStart          = oidSnmpTraps + ".1"
	oidWarmStart          = oidSnmpTraps + ".2"
	oidLinkDown           = oidSnmpTraps + ".3"
	oidLinkUp             = oidSnmpTraps + ".4"
	oidAuthFailure        = oidSnmpTraps + ".5"
	oidEgpNeighborLoss    = oidSnmpTraps + ".6"
)

// wellKnownTraps names the generic notifications.
var wellKnownTraps = map[string]string{
	oidColdStart:       "coldStart",
	oidWarmStart:       "warmStart",
	oidLinkDown:        "linkDown",
	oidLinkUp:          "linkUp",
	oidAuthFailure:     "authenticationFailure",
	oidEgpNeighborLoss: "egpNeighborLoss",
}
