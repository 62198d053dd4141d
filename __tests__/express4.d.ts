// Express 4 is installed as `express4` (npm alias) so both majors are tested side by side.
declare module 'express4' {
  import express from 'express';
  export default express;
}
