import { setTimeout as delay } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { abortError, linkedSignal, SluiceError, timeLimit } from '../src/index';

describe('linkedSignal', () => {
  it('aborts with the reason of the first source that aborts', () => {
    const a = new AbortController();
    const b = new AbortController();
    using linked = linkedSignal(a.signal, b.signal);
    b.abort('b first');
    a.abort('a later');
    expect(linked.signal.aborted).toBe(true);
    expect(linked.signal.reason).toBe('b first');
  });

  it('is aborted at once when a source already is', () => {
    using linked = linkedSignal(AbortSignal.abort('done'), new AbortController().signal);
    expect(linked.signal.reason).toBe('done');
  });

  it('is unlinked once disposed: a long-lived source keeps nothing of it', () => {
    const source = new AbortController();
    let signal: AbortSignal;
    {
      using linked = linkedSignal(source.signal);
      signal = linked.signal;
    }
    source.abort('later');
    expect(signal.aborted).toBe(false);
  });
});

describe('timeLimit', () => {
  it('aborts with its SluiceError when the time is up, which abortError reports as it is', async () => {
    const limit = new SluiceError('DEADLINE_EXCEEDED', 'too slow', { reason: 'SLUICE_SNAPSHOT_TIMEOUT' });
    using limited = timeLimit(new AbortController().signal, 20, limit);
    await delay(60);
    expect(limited.signal.aborted).toBe(true);
    expect(abortError(limited.signal)).toBe(limit);
  });

  it("follows the caller's signal, and stops its timer when disposed", async () => {
    const caller = new AbortController();
    const limit = new SluiceError('DEADLINE_EXCEEDED', 'too slow');
    let signal: AbortSignal;
    {
      using limited = timeLimit(caller.signal, 20, limit);
      signal = limited.signal;
      caller.abort('cancelled');
      expect(signal.reason).toBe('cancelled');
    }
    const other = timeLimit(new AbortController().signal, 20, limit);
    other[Symbol.dispose]();
    await delay(60);
    expect(other.signal.aborted).toBe(false);
  });
});
