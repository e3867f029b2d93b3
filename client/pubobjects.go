package main

import "github.com/gridpay/gridpay/hsm"

// openPublicObjects opens the key without logging in, for its public data
// objects: the PIN-failure record must be read before the PIN is tried and
// written when login failed. The returned Token implements pinlock.Objects.
func openPublicObjects(mod *hsm.Module, ti hsm.TokenInfo) (*hsm.Token, error) {
	return mod.OpenToken(hsm.Selector{Serial: ti.Serial}, nil, hsm.Options{NoLogin: true, PoolSize: 1})
}
