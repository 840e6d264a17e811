import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { checkPassword, assertPasswordPolicy, PASSWORD_MAX_LENGTH, PASSWORD_MIN_LENGTH } from '../../src/tenants/password-policy.js';
import { AppError } from '../../src/errors.js';

const ctx = { email: 'alice.smith+console@example.com', orgName: 'Acme Widgets' };

describe('password policy', () => {
  test('accepts long passphrases and random passwords', () => {
    for (const pw of ['correct horse battery staple', 'Xk9#mP2$vL7q', 'tr0ub4dor&3xyz', 'purple-monkey-dishwasher', 'monkeybusiness2024!', 'Lucky-Cactus-42']) {
      assert.equal(checkPassword(pw, ctx), null, pw);
    }
  });

  test('refuses passwords shorter than 12 code points, counting characters rather than bytes', () => {
    assert.equal(checkPassword('Xk9#mP2$vL7', ctx), 'too_short');
    assert.equal(checkPassword('Xk9#mP2$vL7q', ctx), null);
    // 11 emoji are 44 UTF-8 bytes but 11 characters: still too short.
    assert.equal(checkPassword('🔒'.repeat(11)), 'too_short');
    assert.equal(PASSWORD_MIN_LENGTH, 12);
  });

  test('refuses passwords longer than 1024 characters', () => {
    const long = 'Xk9#mP2$vL7q'.repeat(100).slice(0, PASSWORD_MAX_LENGTH + 1);
    assert.equal(checkPassword(long), 'too_long');
  });

  test("refuses passwords containing the email's local part or the org name, in any case", () => {
    assert.equal(checkPassword('ALICE.SMITH-rules-42', ctx), 'contains_email');
    assert.equal(checkPassword('xx-alicesmith-2024', ctx), 'contains_email');
    assert.equal(checkPassword('I work at acme widgets', ctx), 'contains_org_name');
    assert.equal(checkPassword('AcmeWidgets#2024', ctx), 'contains_org_name');
    // Without the context the same passwords are fine: the rule is about this account.
    assert.equal(checkPassword('ALICE.SMITH-rules-42'), null);
  });

  test('refuses common passwords and their usual disguises', () => {
    for (const pw of ['Password2024!', 'P@ssw0rd!!!!', 'passwordpassword', 'Summer2024!!!', 'iloveyou1234', 'trustno1trustno1', '1qaz2wsx3edc', 'qwertyuiop12', 'Letmein123456', 'Football#1999']) {
      assert.equal(checkPassword(pw, ctx), 'common_password', pw);
    }
  });

  test('refuses long repeats, sequences and keyboard walks', () => {
    assert.equal(checkPassword('aaaaaaaaaaaa'), 'repeated_pattern');
    assert.equal(checkPassword('abababababab'), 'repeated_pattern');
    assert.equal(checkPassword('xy7!xy7!xy7!'), 'repeated_pattern');
    assert.equal(checkPassword('123456789012'), 'sequence');
    assert.equal(checkPassword('987654321098'), 'sequence');
    assert.equal(checkPassword('sdfghjkl5678'), 'sequence');
    assert.equal(checkPassword('zyxwvutsrqpo'), 'sequence');
  });

  test('assertPasswordPolicy throws ERR_VALIDATION naming the field and the reason', () => {
    assert.throws(
      () => assertPasswordPolicy('Password2024!', ctx),
      (err: unknown) => err instanceof AppError && err.code === 'ERR_VALIDATION' && err.details?.field === 'password' && err.details?.reason === 'common_password',
    );
    assert.doesNotThrow(() => assertPasswordPolicy('correct horse battery staple', ctx));
  });
});

describe('generated passwords', () => {
  test('a generated password always meets the policy, even for a short org name and email that random text can contain', async () => {
    const { generatePassword, checkPassword } = await import('../../src/tenants/password-policy.js');
    // A 3-character name appears in roughly one random 24-character draw in 1500: 3000 draws would
    // almost surely hit it if the generator did not draw again.
    const ctx = { orgName: 'abc', email: 'xyz@example.test' };
    for (let i = 0; i < 3000; i++) assert.equal(checkPassword(generatePassword(ctx), ctx), null);
  });
});
