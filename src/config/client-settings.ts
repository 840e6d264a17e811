/**
 * The client commands' variables (issue 10, item 8). The server accepts and ignores them (so one shell
 * can hold both), which is why `config/` composes this section too; only src/cli/credentials.ts reads them.
 */
import { defineSection, str } from '../settings.js';

/** The variable names, each written once. */
export const CLIENT_ENV = { url: 'OBSCURA_URL', apiKey: 'OBSCURA_API_KEY', credentialsFile: 'OBSCURA_CREDENTIALS_FILE' } as const;

export interface ClientSettings {
  readonly url: string | undefined;
  readonly apiKey: string | undefined;
  readonly credentialsFile: string | undefined;
}

export const CLIENT_SETTINGS = defineSection<ClientSettings>({
  url: str({ env: CLIENT_ENV.url, doc: 'Client commands: the server to talk to.', defaultText: 'http://127.0.0.1:8080' }),
  apiKey: str({ env: CLIENT_ENV.apiKey, doc: 'Client commands: the API key (wins over the credentials file).' }),
  credentialsFile: str({ env: CLIENT_ENV.credentialsFile, doc: 'Client commands: a JSON credentials file (mode 0600).', defaultText: '~/.config/obscura/credentials.json' }),
});
