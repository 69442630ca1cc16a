/** The server version this extension was built with (scripts/build.mjs reads it from
 * server/crucible/__init__.py): the managed environment installs exactly this one. */
declare const __CRUCIBLE_SERVER_VERSION__: string;

export const SERVER_VERSION: string = __CRUCIBLE_SERVER_VERSION__;
