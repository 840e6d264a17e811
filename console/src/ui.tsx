/** Small accessible building blocks shared by the pages. */
import type { ComponentChildren } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import { navigate, BASE } from './router.js';
import { explain } from './api.js';

/** An in-app link: a real <a href> (keyboard, middle-click) that navigates without a reload. */
export function Link(props: { to: string; children: ComponentChildren; class?: string; current?: boolean }) {
  const onClick = (e: MouseEvent) => {
    if (e.metaKey || e.ctrlKey || e.shiftKey || e.button !== 0) return;
    e.preventDefault();
    navigate(props.to);
  };
  return (
    <a href={BASE + props.to} onClick={onClick} class={props.class} aria-current={props.current ? 'page' : undefined}>
      {props.children}
    </a>
  );
}

/** A status line read out by screen readers; errors are announced assertively. */
export function Notice(props: { error?: unknown; ok?: string | null; info?: string | null }) {
  if (props.error) return <p class="notice error" role="alert">{explain(props.error)}</p>;
  if (props.ok) return <p class="notice ok" role="status">{props.ok}</p>;
  if (props.info) return <p class="notice info" role="status">{props.info}</p>;
  return null;
}

/** A labelled form field. */
export function Field(props: { label: string; hint?: string; children: ComponentChildren; id: string }) {
  return (
    <div class="field">
      <label for={props.id}>{props.label}</label>
      {props.children}
      {props.hint ? <p class="hint" id={`${props.id}-hint`}>{props.hint}</p> : null}
    </div>
  );
}

/** Runs an async action, tracking busy state and the error. */
export function useAction<A extends unknown[]>(fn: (...args: A) => Promise<void>) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const run = async (...args: A) => {
    setBusy(true);
    setError(null);
    try {
      await fn(...args);
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  return { busy, error, run, setError };
}

/** Loads data on mount (and when `deps` change); `reload` refetches. */
export function useLoad<T>(load: () => Promise<T>, deps: unknown[] = []) {
  const [data, setData] = useState<T | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [tick, setTick] = useState(0);
  useEffect(() => {
    let live = true;
    setError(null);
    load().then(
      (d) => live && setData(d),
      (e) => live && setError(e),
    );
    return () => {
      live = false;
    };
  }, [...deps, tick]);
  return { data, error, reload: () => setTick((n) => n + 1) };
}

/** Moves focus to the page heading when a page opens (screen readers announce the new page). */
export function PageTitle(props: { children: ComponentChildren }) {
  const ref = useRef<HTMLHeadingElement>(null);
  useEffect(() => {
    ref.current?.focus();
    document.title = `${ref.current?.textContent ?? ''} · Obscura console`;
  }, []);
  return (
    <h1 tabIndex={-1} ref={ref}>
      {props.children}
    </h1>
  );
}

/** A copy-to-clipboard button that says when it worked. */
export function CopyButton(props: { text: string; label?: string }) {
  const [done, setDone] = useState<string | null>(null);
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(props.text);
      setDone('Copied');
    } catch {
      setDone('Copy failed: select the text and copy it');
    }
  };
  return (
    <span class="copy">
      <button type="button" onClick={copy}>
        {props.label ?? 'Copy'}
      </button>
      <span role="status" class="hint">
        {done}
      </span>
    </span>
  );
}

export const when = (d: string | null) => (d ? new Date(d).toLocaleString() : '—');

export type Submit = Event;

/** A secret shown once (OAuth client secret, transform key, webhook secret): copy it now or never. */
export function SecretReveal(props: { title: string; secret: string; label: string; testid: string; children?: ComponentChildren; onDone: () => void }) {
  const id = `${props.testid}-title`;
  return (
    <section class="card reveal" aria-labelledby={id}>
      <h3 id={id}>{props.title}</h3>
      <p>
        <strong>Copy it now. You will not see it again:</strong> Obscura keeps it only in a form it cannot show you.
      </p>
      {props.children}
      <p class="secret-line">
        <code class="secret" data-testid={props.testid}>
          {props.secret}
        </code>
        <CopyButton text={props.secret} label={props.label} />
      </p>
      <button type="button" onClick={props.onDone}>
        I have stored it
      </button>
    </section>
  );
}

/** Human bytes (binary units). */
export const bytes = (n: number) => (n < 1024 ? `${n} B` : n < 1024 ** 2 ? `${(n / 1024).toFixed(1)} KiB` : n < 1024 ** 3 ? `${(n / 1024 ** 2).toFixed(1)} MiB` : `${(n / 1024 ** 3).toFixed(2)} GiB`);
