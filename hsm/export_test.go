package hsm

import "context"

// ReadAttributeForTest reads one raw attribute of the signer's private key,
// so integration tests can show that the token refuses CKA_VALUE.
func (s *Signer) ReadAttributeForTest(ctx context.Context, typ uint) ([]byte, error) {
	v, err := s.tok.attrs(ctx, s.handle, typ)
	if err != nil {
		return nil, err
	}
	return v[0], nil
}

// ReadAttributeForTest is the AEAD's counterpart.
func (a *AEAD) ReadAttributeForTest(ctx context.Context, typ uint) ([]byte, error) {
	v, err := a.tok.attrs(ctx, a.handle, typ)
	if err != nil {
		return nil, err
	}
	return v[0], nil
}

// PoolStatsForTest reports how many sessions the token opened and discarded.
func (t *Token) PoolStatsForTest() (opened, discarded int64) {
	return t.pool.stats.opened.Load(), t.pool.stats.discarded.Load()
}
