/**
 * The client commands' help text, apart from their code so `obscura serve` and the operator
 * commands do not load the SDK and tus client to print it (issue 12, item 6: lazy imports).
 */
export const CLIENT_HELP = `Client commands (talk to a running server; see docs/cli.md):
  obscura upload FILE [--filename NAME] [--resume UPLOAD_URL] [--chunk-size BYTES] [--json]
                                        resumable upload (tus) with a progress bar; prints the asset id
  obscura process FILE|ASSET_ID|URL --op OP [--op OP ...] (-o OUT | --store) [--async] [--preview]
                  [--keep-metadata] [--ttl SECONDS] [--json]
                                        e.g. --op resize:width=400 --op format:webp -o out.webp
                                        a video is processed as a job with a progress bar:
                                        --op scale:height=720 --op format:mp4,codec=h264 -o out.mp4
  obscura download ASSET_ID [-o FILE] [--force] [--json]
  obscura assets list [--type T] [--kind upload|output] [--created-after ISO] [--created-before ISO]
                      [--limit N] [--cursor C | --all] [--json]
                                        newest first; prints how to get the next page
  obscura jobs list [--status S] [--created-after ISO] [--created-before ISO] [--limit N] [--cursor C | --all] [--json]
  obscura jobs get JOB_ID [--json]
  obscura jobs wait JOB_ID [--timeout SECONDS] [-o FILE] [--force] [--json]
                                        a video job shows a progress bar (percent, fps, ETA)
  obscura jobs cancel JOB_ID [--json]   stop a queued or running job (its ffmpeg is killed; no output)
  obscura orgs export [-o FILE] [--force] [--no-wait] [--timeout SECONDS] [--json]
                                        export everything the credential's org owns (records and media)
                                        into one tar file, checked against its SHA-256 (docs/export.md)

Credentials: OBSCURA_URL and OBSCURA_API_KEY, or ~/.config/obscura/credentials.json
(OBSCURA_CREDENTIALS_FILE) readable only by you (chmod 600).
Exit codes: 0 ok, 1 API/processing failure, 2 usage error, 3 credentials problem, 130 interrupted.`;
