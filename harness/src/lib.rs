//! The test harness: builds images and pvrexports, boots an appengine in
//! Docker, deploys the example containers and checks the mesh end to end.
