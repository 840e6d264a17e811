/** Client-side routes under /console (the server answers index.html for every one of them). */
import { useEffect, useState } from 'preact/hooks';

export const BASE = '/console';
const listeners = new Set<() => void>();

/** Goes to a console path (relative to /console), without a reload. */
export function navigate(path: string, replace = false): void {
  const url = BASE + (path.startsWith('/') ? path : `/${path}`);
  if (replace) history.replaceState(null, '', url);
  else history.pushState(null, '', url);
  for (const l of listeners) l();
}

/** The current console path ("/", "/apps/…"), re-rendering on navigation. */
export function usePath(): string {
  const read = () => location.pathname.slice(BASE.length) || '/';
  const [path, setPath] = useState(read);
  useEffect(() => {
    const update = () => setPath(read());
    listeners.add(update);
    addEventListener('popstate', update);
    return () => {
      listeners.delete(update);
      removeEventListener('popstate', update);
    };
  }, []);
  return path;
}

/** The token in the URL fragment (#token=…): fragments are never sent to servers or in Referer. */
export function fragmentToken(): string | null {
  return new URLSearchParams(location.hash.slice(1)).get('token');
}
