/** Where the project and its cached tools are, for tests. */
export const PROJECT_ROOT = new URL("../../", import.meta.url).pathname.replace(/\/$/, "");
export const CACHE_DIR = `${PROJECT_ROOT}/.cache`;
export const VENV_PYTHON = `${CACHE_DIR}/venv/bin/python`;
export const PY_DRIVERS = `${PROJECT_ROOT}/tests/interop/py`;
