// Express 4 is installed under the alias `express4` for the tests; its API is typed like Express 5's
// wherever the tests use it.
declare module 'express4' {
  import express from 'express';
  export default express;
}
