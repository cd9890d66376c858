// Package e2e holds poolbot's end-to-end tests: the real chat adapters,
// command layer, store and SAL sender, against real servers started on
// loopback (an InspIRCd + Atheme network with accounts, SASL and
// account-tag). It has no non-test code.
package e2e
