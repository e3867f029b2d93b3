-- A load whose allow went out to a USB key that was then unbound (lost,
-- destroyed) can never be settled by the key's word: it cannot reach the
-- gateway any more. An operator settles it on evidence outside the system
-- (the key read at the desk, the meter card's records), recorded in the
-- audit log with the operator's name and reason. Such a confirmation is
-- marked 'operator'.
ALTER TABLE loads DROP CONSTRAINT loads_confirmed_by_check;
ALTER TABLE loads ADD CONSTRAINT loads_confirmed_by_check CHECK (confirmed_by IN ('receipt', 'contact', 'operator'));
