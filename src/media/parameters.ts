/** Parameter schemas every media kind's operations may share (published with their own type in the reference). */
import { Type } from 'typebox';

/** A colour as `#rgb`, `#rrggbb` or `#rrggbbaa` (nothing else: no names, no CSS functions). */
export const Color = Type.String({
  pattern: '^#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6}|[0-9a-fA-F]{8})$',
  description: '#rgb, #rrggbb or #rrggbbaa (write # as %23 in URLs)',
});
